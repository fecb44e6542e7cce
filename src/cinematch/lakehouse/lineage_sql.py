"""Column lineage of the gold tables, derived from their SQL (cinematch/lakehouse/sql/gold) by sqlglot.

Each gold model is one SELECT over silver tables; sqlglot resolves every output column through the model's CTEs
down to the silver columns it is computed from, with the silver tables' columns taken from the table catalogue
(storage/catalogue.py). A column computed from no column (``count(*)``, a constant) has no entry: its lineage is
not in the SQL. Nothing here is written by hand, so a changed model changes its lineage.

sqlglot needs about 0.5 s per model, so the result is computed once per process and only when lineage is emitted.
"""

from __future__ import annotations

import functools
from typing import Any

from cinematch.core.log import get_logger, log_event
from cinematch.lakehouse.gold import GOLD_MODELS, load_sql

__all__ = ["gold_column_lineage", "gold_inputs"]

log = get_logger(__name__)

DIALECT = "duckdb"


def _catalogue_schema() -> dict[str, dict[str, dict[str, str]]]:
    """{schema: {table: {column: type}}} of every catalogue table, parsed from its DuckDB DDL."""
    import sqlglot
    from sqlglot import exp

    from cinematch.storage.catalogue import TABLES

    schema: dict[str, dict[str, dict[str, str]]] = {}
    for table in TABLES:
        create = sqlglot.parse_one(table.ddl(), dialect=DIALECT)
        columns = {c.name: c.args["kind"].sql(dialect=DIALECT) for c in create.find_all(exp.ColumnDef)}
        schema.setdefault(table.schema, {})[table.name.split(".", 1)[1]] = columns
    return schema


def _model_lineage(sql: str, schema: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """{output column: sorted [(schema.table, column), ...]} of one SELECT."""
    from sqlglot import exp
    from sqlglot.lineage import lineage

    nodes = lineage(None, sql, schema, dialect=DIALECT)  # every output column at once: one qualification
    found: dict[str, list[tuple[str, str]]] = {}
    for column, node in nodes.items():
        # the leaves of a column's lineage graph are the table columns it is computed from
        sources = {
            (f"{leaf.source.db}.{leaf.source.name}", leaf.name.rsplit(".", 1)[-1])
            for leaf in node.walk()
            if not leaf.downstream and isinstance(leaf.source, exp.Table) and leaf.source.db
        }
        if sources:
            found[column] = sorted(sources)
    return found


@functools.cache
def gold_column_lineage() -> dict[str, dict[str, list[tuple[str, str]]]]:
    """{gold table: {column: [(input table, input column), ...]}} for every gold model whose SQL parses.

    A model sqlglot cannot resolve is left out (with a warning): lineage must never fail the build it describes.
    """
    schema = _catalogue_schema()
    result: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for model in GOLD_MODELS:
        try:
            result[f"gold.{model}"] = _model_lineage(load_sql(model), schema)
        except Exception as exc:  # sqlglot's errors have no common base class worth naming
            log_event(log, "column_lineage_skipped", model=model, error=f"{type(exc).__name__}: {exc}"[:300])
    return result


def gold_inputs() -> dict[str, list[str]]:
    """{gold table: the tables its column lineage reads}, from :func:`gold_column_lineage`."""
    return {
        table: sorted({source for sources in columns.values() for source, _ in sources})
        for table, columns in gold_column_lineage().items()
    }
