"""The data-quality checks' SQL: one file per check, ``<layer>/<check name>.sql``; checks are declared in Python."""

from __future__ import annotations

from importlib import resources


def read(layer: str, name: str) -> str:
    """The text of ``<layer>/<name>.sql``, e.g. ``read("gold", "movie_kpis.ranks_valid")``."""
    path = resources.files(__name__).joinpath(layer).joinpath(f"{name}.sql")
    return path.read_text(encoding="utf-8").strip().rstrip(";")
