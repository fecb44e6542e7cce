"""Pipeline commands: etl (and later simulate, demo, publish, report)."""

from __future__ import annotations

from datetime import datetime

import click

from cinematch.cli._app import Ctx, cli, command, emit, out, table
from cinematch.warehouse import write_session


@command(cli, "etl")
@click.option("--full-refresh", is_flag=True, help="Rebuild silver and gold from all of bronze.")
@click.option("--date", "logical_date", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Pin gold to this logical date (ratings up to the end of that day).")  # fmt: skip
@click.option("--no-lake", is_flag=True, help="Skip writing the Parquet lake.")
def etl_cmd(ctx: Ctx, full_refresh: bool, logical_date: datetime | None, no_lake: bool) -> None:
    """Bronze → silver → gold with quality gates."""
    from cinematch.lakehouse.etl import logical_end, run_etl

    as_of = logical_end(logical_date.date()) if logical_date else None
    with write_session(ctx.settings, "etl") as con:
        doc = run_etl(con, ctx.settings, full_refresh=full_refresh, as_of=as_of, write_lake=not no_lake)

    def human() -> None:
        silver = doc["layers"]["silver"]
        out.print(
            f"silver: {silver['rows']['ratings']:,} ratings, {silver['rows']['movies']:,} movies "
            f"({silver['rows']['placeholders']:,} placeholders); new batches: {', '.join(doc['new_batches']) or 'none'}"
        )
        gold = doc["layers"]["gold"]
        if gold.get("skipped"):
            out.print("gold: up to date (no new batches)")
        else:
            out.print(table(f"gold as of {gold['as_of']}", [{"table": k, "rows": v} for k, v in gold["rows"].items()]))
        checks = [c for layer in doc["layers"].values() for c in layer.get("checks", [])]
        bad = [c for c in checks if c["offending_rows"]]
        out.print(f"checks: {len(checks)} run, {sum(c['passed'] for c in checks)} passed")
        if bad:
            out.print(table("checks with offending rows", bad, ["table", "check", "severity", "offending_rows", "passed"]))

    emit(ctx, doc, human)
