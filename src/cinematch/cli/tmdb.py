"""TMDB commands: `cinematch tmdb fetch`."""

from __future__ import annotations

from pathlib import Path

import click

from cinematch.cli.app import Ctx, cli, command, emit, out


@cli.group("tmdb")
def tmdb() -> None:
    """Enrich movies from the TMDB API (CINEMATCH_TMDB_API_KEY, CINEMATCH_TMDB_BASE_URL)."""


@command(tmdb, "fetch")
@click.option("--movies-from-links", "links", type=click.Path(path_type=Path),
              help="MovieLens links.csv (default: the links.csv beside the ingested movies file).")  # fmt: skip
@click.option("--limit", type=click.IntRange(min=0), help="Fetch at most this many new movies.")
def fetch_cmd(ctx: Ctx, links: Path | None, limit: int | None) -> None:
    """Fetch details, credits and reviews of the movies not fetched yet; rate-limited and resumable."""
    from cinematch.ingest.tmdb import TmdbClient, fetch_tmdb, plan_fetch
    from cinematch.storage.warehouse import write_session

    TmdbClient(ctx.settings).close()  # an unset key stops here (exit 2), before the warehouse lock
    with write_session(ctx.settings, "tmdb fetch") as con:
        plan = plan_fetch(con, ctx.settings, links, limit)
        with ctx.progress("tmdb fetch", total=len(plan.todo)) as update:
            doc = fetch_tmdb(con, ctx.settings, progress=update, plan=plan)

    def human() -> None:
        out.print(
            f"tmdb: {doc['fetched']:,} fetched, {doc['skipped']:,} already fetched, {doc['not_found']:,} not found, "
            f"{doc['malformed']:,} malformed (quarantined in bronze.tmdb_raw), {doc['failed']:,} failed; "
            f"{doc['requests']:,} requests in {doc['seconds']:.1f}s (max {doc['max_requests_in_1s']} in 1 s)"
        )

    emit(ctx, doc, human)
