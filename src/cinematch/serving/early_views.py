"""The user page's views written into the next views file while the rest of a step runs (DuckDB warehouses).

``user_summary``, ``user_ratings``, ``user_genres`` and ``population_genres`` (serving/user_sql.py) read
nothing but silver, so once ETL is done they can be written while the drift check, a training and the
lists run: a second DuckDB connection of the same database (``con.cursor()``) writes them into the new
views file from a thread, and :func:`cinematch.serving.publish.publish` writes the other views into the
same file, waits for the thread, and names the file ``CURRENT`` as before. The file is the one a plain
publish writes, table for table; only its name carries the time it was started.

The thread's queries run inside DuckDB, which releases the GIL, and most of the work beside them (NumPy
lists, BLAS fits) leaves part of the cores idle: a 25M-rating week's lists and user views took 26.5-27.8 s one
after the other and 20.0-20.6 s side by side (BENCHMARKS.md). PostgreSQL warehouses publish as before.

A step that fails or is killed before its publish leaves no half-written file behind that ``CURRENT`` could
name: :func:`early_user_views` interrupts the thread and deletes the file, and the next publish removes any
file a kill left.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from cinematch.core.log import get_logger, log_event
from cinematch.core.settings import Settings
from cinematch.serving.layout import attach_views, drop_views_file, new_views_path
from cinematch.serving.user_sql import user_view_sql
from cinematch.serving.view_sql import ALIAS
from cinematch.storage.protocol import Warehouse
from cinematch.storage.warehouse import table_exists

__all__ = ["UserViews", "early_user_views", "start_user_views"]

log = get_logger(__name__)


class UserViews:
    """The user views being written into ``path`` (attached as ``ALIAS``) by a thread of their own."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, has_users: bool) -> None:
        """Start writing into ``path``, already attached to ``con`` as ``ALIAS``."""
        self.path = path
        self.has_users = has_users
        self._views = user_view_sql(ALIAS, has_users, top_n_aggregate=True)
        self.tables = tuple(self._views)
        self.consumed = False  # publish took the file over
        self._con = con
        self._cursor = con.cursor()
        self._counts: dict[str, int] = {}
        self._error: BaseException | None = None
        self._started = time.perf_counter()
        self._seconds = 0.0
        self._thread = threading.Thread(target=self._write, name="cinematch-user-views", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        try:
            for name, (sql, params) in self._views.items():
                self._cursor.execute(f"create table {ALIAS}.{name} as {sql}", params)
                self._counts[name] = self._cursor.execute(f"select count(*) from {ALIAS}.{name}").fetchall()[0][0]
        except BaseException as exc:  # handed to the waiting thread
            self._error = exc
        finally:
            self._seconds = time.perf_counter() - self._started

    def wait(self) -> dict[str, int]:
        """The tables' row counts once written (in ``user_view_sql`` order); re-raises the thread's error."""
        self._thread.join()
        with contextlib.suppress(duckdb.Error):
            self._cursor.close()
        if self._error is not None:
            raise self._error
        log_event(log, "user_views_written", path=self.path.name, seconds=round(self._seconds, 3),
                  **{f"{name}_rows": n for name, n in self._counts.items()})  # fmt: skip
        return dict(self._counts)

    def stop(self) -> None:
        """Interrupt the thread's query and wait for the thread (a publish or step that failed)."""
        with contextlib.suppress(duckdb.Error):
            self._cursor.interrupt()
        self._thread.join()
        with contextlib.suppress(duckdb.Error):
            self._cursor.close()

    def discard(self) -> None:
        """Stop the thread, detach the file and delete it (a step that failed before its publish)."""
        self.stop()
        drop_views_file(self._con, self.path, ALIAS)


def start_user_views(con: Warehouse, settings: Settings) -> UserViews | None:
    """Attach a new views file and start writing the user views into it; None on PostgreSQL (publish writes them
    itself there). The caller hands the result to ``publish(..., early=...)`` or discards it."""
    if not isinstance(con, duckdb.DuckDBPyConnection):
        return None
    settings.serving_dir.mkdir(parents=True, exist_ok=True)
    path = new_views_path(settings)
    attach_views(con, path, ALIAS)
    return UserViews(con, path, has_users=table_exists(con, "silver", "users"))


@contextmanager
def early_user_views(con: Warehouse, settings: Settings) -> Iterator[UserViews | None]:
    """``start_user_views`` for the block that ends in ``publish(..., early=views)``; if the block leaves without
    publishing (an error, an interrupt), the thread is stopped and the file deleted."""
    views = start_user_views(con, settings)
    try:
        yield views
    finally:
        if views is not None and not views.consumed:
            views.discard()
