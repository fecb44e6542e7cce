"""Data commands: init, ingest, status, sql, datasets generate."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import click

from cinematch.cli.app import Ctx, cli, command, emit, out, table
from cinematch.core.errors import BadInput
from cinematch.datasets.formats import ALL_FORMATS
from cinematch.ingest.bronze import KINDS, BufferStatus, buffer_status, ingest_file
from cinematch.ingest.landing import ingest_landing
from cinematch.storage.warehouse import describe, read_session, warehouse_exists, write_session


@command(cli, "init")
def init_cmd(ctx: Ctx) -> None:
    """Create the warehouse schemas and tables (idempotent)."""
    with write_session(ctx.settings, "init"):
        pass
    doc = {
        "home": str(ctx.settings.home_dir),
        "warehouse": describe(ctx.settings),  # a PostgreSQL URL is shown without its password
        "initialized": True,
    }
    emit(ctx, doc, lambda: out.print(f"warehouse ready at {doc['warehouse']}"))


@command(cli, "ingest")
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.option("--batch-id", help="Batch id (default: the file name without extension).")
@click.option("--kind", type=click.Choice(KINDS), default="ratings", show_default=True)
@click.option("--format", "fmt", type=click.Choice(ALL_FORMATS), default="auto", show_default=True)
@click.option("--landing", is_flag=True, help="Load every new file in CINEMATCH_HOME/landing/.")
def ingest_cmd(ctx: Ctx, file: Path | None, batch_id: str | None, kind: str, fmt: str, landing: bool) -> None:
    """Load one batch exactly once; bad rows go to quarantine with a reason."""
    if landing == (file is not None):
        raise BadInput("pass either FILE or --landing (not both, not neither)")
    with write_session(ctx.settings, "ingest") as con:
        if landing:
            results = ingest_landing(con, ctx.settings.landing_dir)
            doc = {
                "landing": str(ctx.settings.landing_dir),
                "files": results,
                "inserted": sum(r["inserted"] for r in results),
                "quarantined": sum(r["quarantined"] for r in results),
            }
            emit(
                ctx,
                doc,
                lambda: out.print(
                    table(
                        f"landing: {len(results)} new file(s)",
                        results,
                        ["batch_id", "inserted", "quarantined", "skipped", "moved_to"],
                    )
                    if results
                    else "landing: no new files"
                ),
            )
            return
        assert file is not None  # FILE without --landing, as checked above
        res = ingest_file(con, file, batch_id=batch_id, kind=kind, fmt=fmt)
    doc = res.to_dict()

    def human() -> None:
        if res.skipped:
            out.print(f"batch {res.batch_id}: skipped ({res.notes})")
        else:
            out.print(
                f"batch {res.batch_id}: {res.inserted:,} {kind} loaded, {res.quarantined:,} quarantined "
                f"({res.format}, {res.seconds:.2f}s, {res.rows_per_second or 0:,.0f} rows/s)"
            )

    emit(ctx, doc, human)


@command(cli, "status")
def status_cmd(ctx: Ctx) -> None:
    """Buffer status: total records, batches, ingestion history, quarantined rows."""
    if not warehouse_exists(ctx.settings):
        doc = BufferStatus.empty()
    else:
        with read_session(ctx.settings) as con:
            doc = buffer_status(con)

    def human() -> None:
        out.print(
            f"buffer: {doc['total_records']:,} ratings in {doc['n_batches']} batch(es), "
            f"{doc['quarantined_records']:,} quarantined, {doc['movies']:,} movies"
        )
        if doc["batches"]:
            out.print(
                table(
                    "ingestion history",
                    doc["batches"],
                    ["batch_id", "kind", "record_count", "quarantined_count", "status", "ingestion_date"],
                )
            )
        if doc["quarantine_reasons"]:
            out.print(table("quarantine", doc["quarantine_reasons"]))

    emit(ctx, doc, human)


@command(cli, "sql")
@click.argument("query")
@click.option("--limit", type=int, default=1000, show_default=True, help="Most rows to print.")
def sql_cmd(ctx: Ctx, query: str, limit: int) -> None:
    """Read-only query against the warehouse."""
    from cinematch.storage.query import run_readonly

    rows = run_readonly(ctx.settings, query, limit)
    emit(ctx, rows, lambda: out.print(table(None, rows) if rows else "(no rows)"))


@cli.group("datasets")
def datasets() -> None:
    """Generate and inspect datasets."""


@command(datasets, "generate")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Folder to write into.")
@click.option("--users", type=click.IntRange(min=10), default=None)
@click.option("--movies", type=click.IntRange(min=10), default=None)
@click.option("--ratings", type=click.IntRange(min=100), default=None, help="Ratings in the base file.")
@click.option("--weeks", type=click.IntRange(min=1, max=52), default=None, help="Weekly batch files.")
@click.option("--drift-week", type=click.IntRange(min=1), default=None, help="First week with drift.")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--scale", type=click.Choice(["small", "medium", "large"]), default="small", show_default=True)
def generate_cmd(
    ctx: Ctx,
    out_dir: Path,
    users: int | None,
    movies: int | None,
    ratings: int | None,
    weeks: int | None,
    drift_week: int | None,
    seed: int,
    scale: Literal["small", "medium", "large"],
) -> None:
    """Write MovieLens-shaped data (ratings, movies) plus weekly batch files with controlled drift."""
    import dataclasses

    from cinematch.datasets.generate import generate_dataset
    from cinematch.datasets.generate_config import scale_config

    config = scale_config(scale, seed)
    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "users": users,
            "movies": movies,
            "ratings": ratings,
            "weeks": weeks,
            "drift_week": drift_week,
        }.items()
        if v is not None
    }
    config = dataclasses.replace(config, **overrides)
    if config.drift_week > config.weeks + 1:
        raise BadInput(f"--drift-week {config.drift_week} is after the last week ({config.weeks}); lower it")
    with ctx.progress("generating") as update:
        summary = generate_dataset(out_dir, config, progress=lambda msg: update(description=msg))
    emit(
        ctx,
        summary,
        lambda: out.print(
            f"wrote {out_dir}: "
            + ", ".join(f"{Path(f['path']).name} ({f['rows']:,} rows)" for f in summary["files"].values())
        ),
    )
