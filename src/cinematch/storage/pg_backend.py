"""The PostgreSQL warehouse: numbered migrations instead of DDL, an advisory writer lock instead of the file lock.

Imported only when ``CINEMATCH_DATABASE_URL`` is set (``cinematch.storage.warehouse.backend``): the `postgres`
extra stays optional.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cinematch.core.errors import CineMatchError
from cinematch.core.secrets import describe_database_url
from cinematch.core.settings import Settings
from cinematch.storage.pg_connect import application_name
from cinematch.storage.pg_lock import writer_lock
from cinematch.storage.postgres import PgConnection, schema_version

__all__ = ["PostgresBackend"]


@dataclass(frozen=True)
class PostgresBackend:
    """The warehouse as the PostgreSQL database at ``url``; readers see committed snapshots and take no lock."""

    settings: Settings
    url: str

    def connect(self, read_only: bool = False, command: str = "cinematch") -> PgConnection:
        return PgConnection(self.url, read_only=read_only, application_name=application_name(command))

    @contextmanager
    def writing(self, command: str) -> Iterator[PgConnection]:
        """A read-write connection with the migrations applied, holding the writer lock (not for ingestion)."""
        con = self.connect(command=command)
        try:
            con.migrate()  # numbered migrations, serialized across processes (pg_migrations.py)
            # across machines the HOME lock cannot help: writers queue on a PostgreSQL advisory lock
            with writer_lock(con, command, self.settings.lock_timeout_seconds):
                yield con
        finally:
            con.close()

    @contextmanager
    def reading(self) -> Iterator[PgConnection]:
        """A read-only connection; refused while the database has no CineMatch schema (a read creates nothing)."""
        con = self.connect(read_only=True, command="read")
        try:
            if schema_version(con) is None:
                raise CineMatchError("the PostgreSQL warehouse has no CineMatch schema yet: run `cinematch init` first")
            yield con
        finally:
            con.close()

    def exists(self) -> bool:
        con = self.connect(read_only=True, command="status")
        try:
            return schema_version(con) is not None
        finally:
            con.close()

    def describe(self) -> str:
        """The URL without its password."""
        return describe_database_url(self.url)
