"""What a PgConnection returns: eager results (``execute``) and lazy relations (``sql``), as DuckDB's do."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pyarrow as pa

__all__ = ["PgRelation", "PgResult", "Queryable"]


class Queryable(Protocol):
    """What a relation runs its query on: a PgConnection."""

    def describe(self, sql: str, params: Any) -> list[tuple[str, str]]: ...

    def execute(self, sql: str, params: Any = None) -> PgResult: ...

    def fetch_arrow(self, sql: str, params: Any = None) -> pa.Table: ...


class PgResult:
    """What ``execute`` returns: rows fetched eagerly and a DB-API ``description``."""

    def __init__(self, description: list[tuple[Any, ...]] | None, rows: list[tuple[Any, ...]]) -> None:
        self.description = description
        self._rows = rows
        self._pos = 0

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._pos = self._rows[self._pos :], len(self._rows)
        return rows

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._pos >= len(self._rows):
            return None
        self._pos += 1
        return self._rows[self._pos - 1]

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        rows = self._rows[self._pos : self._pos + size]
        self._pos += len(rows)
        return rows


class PgRelation:
    """What ``sql`` returns: a lazy query with ``to_arrow_table``, ``fetchall``, ``columns`` and ``limit``."""

    def __init__(self, con: Queryable, sql: str, params: Any = None) -> None:
        self._con, self._sql, self._params = con, sql, params

    @property
    def columns(self) -> list[str]:
        return [name for name, _ in self._con.describe(self._sql, self._params)]

    def limit(self, n: int) -> PgRelation:
        return PgRelation(self._con, f"select * from ({self._sql}) as _cm_limit limit {int(n)}", self._params)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._con.execute(self._sql, self._params).fetchall()

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._con.execute(self._sql, self._params).fetchone()

    def to_arrow_table(self) -> pa.Table:
        return self._con.fetch_arrow(self._sql, self._params)

    arrow = to_arrow_table

    def fetchnumpy(self) -> dict[str, np.ndarray]:
        table = self.to_arrow_table()
        return {name: table.column(name).to_numpy() for name in table.column_names}

    def df(self) -> Any:
        return self.to_arrow_table().to_pandas()
