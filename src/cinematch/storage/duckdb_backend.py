"""The DuckDB warehouse: one file in HOME, its tables from the catalogue, its blocks verified before a write."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb

from cinematch.core.errors import CineMatchError
from cinematch.core.settings import Settings
from cinematch.storage import catalogue
from cinematch.storage.integrity import check_before_write, open_duckdb
from cinematch.storage.lock import HomeLock

__all__ = ["DuckDBBackend", "init_schema"]


def init_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every schema and table of the catalogue in a DuckDB connection (idempotent)."""
    for ddl in catalogue.duckdb_ddl():
        con.execute(ddl)


@dataclass(frozen=True)
class DuckDBBackend:
    """The warehouse as the DuckDB file ``settings.duckdb_path``; commands queue on the HOME lock."""

    settings: Settings

    def connect(self, read_only: bool = False, command: str = "cinematch") -> duckdb.DuckDBPyConnection:
        """Open the file; a read never creates it."""
        path = self.settings.duckdb_path
        if read_only:
            if not path.exists():
                raise CineMatchError(
                    f"no warehouse at {path}: run `cinematch init` (or ingest a batch) first, "
                    "or set CINEMATCH_HOME to the home you meant"
                )
            return open_duckdb(path, read_only=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        return open_duckdb(path, read_only=False)

    @contextmanager
    def writing(self, command: str) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection with every table created, once the blocks this command changes are verified.

        The caller holds the HOME lock exclusively: DuckDB allows one writing process per file.
        """
        con = self.connect(command=command)
        try:
            if self.settings.duckdb_path.stat().st_size > 0:
                check_before_write(con, self.settings.duckdb_path, command)
            init_schema(con)
            yield con
        finally:
            con.close()

    @contextmanager
    def reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection under the shared HOME lock."""
        with HomeLock(self.settings, exclusive=False):
            con = self.connect(read_only=True, command="read")
            try:
                yield con
            finally:
                con.close()

    def exists(self) -> bool:
        return self.settings.duckdb_path.exists()

    def describe(self) -> str:
        return str(self.settings.duckdb_path)
