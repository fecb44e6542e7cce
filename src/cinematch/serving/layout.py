"""The serving directory: views files, the tables they hold, and the ``CURRENT`` pointer readers follow.

The API never opens the warehouse: DuckDB allows one read-write process per file and read-only opens
conflict with a writer elsewhere. Each publication is therefore a NEW file ``HOME/serving/views_<stamp>.duckdb``,
written and closed completely before ``HOME/serving/CURRENT`` (a one-line file naming it) is replaced atomically.
A reader that stats ``CURRENT`` sees either the old or the new publication, never a half-written one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from datetime import datetime
from pathlib import Path

import duckdb

from cinematch.core.settings import Settings
from cinematch.storage.audit import utcnow
from cinematch.storage.protocol import Warehouse

__all__ = [
    "CURRENT",
    "PREFIX",
    "VIEW_TABLES",
    "attach_views",
    "current_views",
    "drop_views_file",
    "new_views_path",
    "point_current",
]

CURRENT = "CURRENT"
PREFIX = "views_"
VIEW_TABLES = ("recommendations", "fallback", "trending", "genres", "models", "drift", "buffer",
               "rating_distribution", "content_performance", "movie_details", "meta", "user_summary",
               "user_ratings", "user_genres", "population_genres")  # fmt: skip


def new_views_path(settings: Settings, now: datetime | None = None) -> Path:
    """``views_<UTC stamp>_<random>.duckdb``: sortable by name, unique even within one microsecond."""
    return settings.serving_dir / f"{PREFIX}{(now or utcnow()):%Y%m%dT%H%M%S_%f}Z_{secrets.token_hex(3)}.duckdb"


def current_views(settings: Settings) -> Path | None:
    """The views file ``CURRENT`` names, or None before the first publish (or if it names something odd)."""
    pointer = settings.serving_dir / CURRENT
    try:
        name = pointer.read_text().strip()
    except FileNotFoundError:
        return None
    # CURRENT holds a bare file name; anything else (a path, ..) is ignored rather than followed.
    if not name.startswith(PREFIX) or "/" in name or name != Path(name).name:
        return None
    return settings.serving_dir / name


def point_current(settings: Settings, path: Path) -> None:
    tmp = settings.serving_dir / f".{CURRENT}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        fh.write(path.name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, settings.serving_dir / CURRENT)


def attach_views(con: Warehouse, path: Path, alias: str) -> None:
    """Attach the views file ``path`` (created if absent) to ``con`` as ``alias``, to write its tables."""
    con.execute(f"attach '{str(path).replace(chr(39), chr(39) * 2)}' as {alias}")


def drop_views_file(con: Warehouse, path: Path, alias: str) -> None:
    """Detach ``alias`` if it is attached and delete ``path`` and its WAL: a publication that did not complete."""
    with contextlib.suppress(duckdb.Error):
        con.execute(f"detach {alias}")
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)
