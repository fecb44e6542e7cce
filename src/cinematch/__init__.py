"""CineMatch: a local-first MLOps platform for movie ratings."""

from cinematch.core.settings import Settings, get_settings

__version__ = "0.1.0"
__all__ = ["Settings", "__version__", "get_settings"]
