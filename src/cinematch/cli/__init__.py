"""The `cinematch` command line. Each module registers its commands on the one group."""

from cinematch.cli import data, ml, pipeline, replay, serve, tmdb  # noqa: F401  (registers commands)
from cinematch.cli.app import cli, main

__all__ = ["cli", "main"]
