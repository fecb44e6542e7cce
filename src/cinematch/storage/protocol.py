"""The warehouse connection as the library uses it: the part of DuckDB's Python API both warehouses offer.

``duckdb.DuckDBPyConnection`` (the DuckDB file in HOME) and ``cinematch.storage.postgres.PgConnection``
(PostgreSQL) both satisfy :class:`Warehouse` structurally; mypy checks it where ``connect`` returns either.
Code that receives the warehouse takes a ``Warehouse``; code that needs DuckDB itself (a scratch in-memory
DuckDB, the integrity checks of the file, the serving views file) keeps ``duckdb.DuckDBPyConnection``.

Parameters are positional-only: the two connections name them differently (``query``/``parameters`` in DuckDB,
``sql``/``params`` in PgConnection), and the library passes them by position.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: importing the protocol stays cheap
    import pyarrow as pa

__all__ = ["Backend", "CopyWarehouse", "Cursor", "Relation", "Warehouse"]


class Cursor(Protocol):
    """What ``execute`` returns: rows fetched with the DB-API calls and a DB-API ``description``."""

    @property
    def description(self) -> Sequence[tuple[Any, ...]] | None: ...

    def fetchall(self) -> list[tuple[Any, ...]]: ...

    def fetchone(self) -> tuple[Any, ...] | None: ...


class Relation(Protocol):
    """What ``sql`` returns for a query: a lazy relation read as Arrow, rows or numpy columns."""

    @property
    def columns(self) -> list[str]: ...

    def fetchall(self) -> list[tuple[Any, ...]]: ...

    def fetchnumpy(self) -> dict[str, Any]: ...

    def to_arrow_table(self) -> pa.Table: ...

    def limit(self, n: int, /) -> Relation: ...


class Warehouse(Protocol):
    """A warehouse connection: DuckDB's API as the library calls it, on DuckDB or PostgreSQL.

    Transactions are statements (``execute("begin transaction")``, ``"commit"``, ``"rollback"``), as in DuckDB.
    """

    def execute(self, query: str, parameters: Any = None, /) -> Cursor: ...

    def executemany(self, query: str, parameters: Sequence[Any], /) -> object: ...

    def sql(self, query: str, /, *, params: Any = None) -> Relation: ...

    def register(self, name: str, data: Any, /) -> object: ...

    def unregister(self, name: str, /) -> object: ...

    def close(self) -> None: ...


@runtime_checkable
class CopyWarehouse(Warehouse, Protocol):
    """A warehouse that also takes rows through PostgreSQL's COPY inside the caller's transaction.

    Loaders that stream rows (``cinematch.ingest.postgres``) ask for this capability rather than for a
    database name; ``PgConnection`` offers it, DuckDB does not.
    """

    def raw(self) -> Any: ...

    def table_columns(self, table: str) -> list[tuple[str, str]]: ...


class Backend(Protocol):
    """What differs between the DuckDB and the PostgreSQL warehouse, chosen once from the settings
    (``cinematch.storage.warehouse.backend``): how to connect, how a writer prepares (DuckDB: verify the file's
    blocks and run the catalogue's DDL; PostgreSQL: apply the migrations and take the advisory writer lock),
    how a reader waits (DuckDB: the shared HOME lock; PostgreSQL: not at all), and whether the warehouse exists.
    """

    def connect(self, read_only: bool = False, command: str = "cinematch") -> Warehouse: ...

    def writing(self, command: str) -> AbstractContextManager[Warehouse]:
        """A read-write connection with every table created, guarded for ``command``; the caller holds the
        exclusive HOME lock."""
        ...

    def reading(self) -> AbstractContextManager[Warehouse]:
        """A read-only connection; a read never creates the warehouse."""
        ...

    def exists(self) -> bool: ...

    def describe(self) -> str:
        """Where the warehouse lives, safe to print."""
        ...
