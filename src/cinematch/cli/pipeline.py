"""Pipeline commands: etl, drift, simulate, demo."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cinematch.cli.app import Ctx, cli, command, emit, out, table
from cinematch.core.errors import BadInput
from cinematch.core.settings import Settings
from cinematch.storage.warehouse import write_session

if TYPE_CHECKING:
    from cinematch.pipelines.simulate import Simulation


@command(cli, "etl")
@click.option("--full-refresh", is_flag=True, help="Rebuild silver and gold from all of bronze.")
@click.option("--date", "logical_date", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Pin gold to this logical date (ratings up to the end of that day).")  # fmt: skip
@click.option("--no-lake", is_flag=True, help="Skip writing the Parquet lake.")
def etl_cmd(ctx: Ctx, full_refresh: bool, logical_date: datetime | None, no_lake: bool) -> None:
    """Bronze → silver → gold with quality gates."""
    from cinematch.lakehouse.etl import logical_end
    from cinematch.pipelines.engine import run_etl

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
            out.print(
                table("checks with offending rows", bad, ["table", "check", "severity", "offending_rows", "passed"])
            )

    emit(ctx, doc, human)


@command(cli, "drift")
@click.option("--reference", type=click.Path(path_type=Path), help="Reference ratings file (with --current).")
@click.option("--current", type=click.Path(path_type=Path), help="Current ratings file (with --reference).")
def drift_cmd(ctx: Ctx, reference: Path | None, current: Path | None) -> None:
    """Data drift (and model drift when a champion exists) with the retrain decision."""
    from cinematch.drift.check import check_drift, drift_files

    if (reference is None) != (current is None):
        raise BadInput("pass both --reference and --current (or neither, to check the warehouse buffer)")
    if reference is not None:
        assert current is not None  # both or neither, as checked above
        doc = drift_files(ctx.settings, reference, current)
    else:
        from cinematch.pipelines import alerts

        with write_session(ctx.settings, "drift") as con:
            doc = check_drift(con, ctx.settings)
        from cinematch.pipelines.mlflow_sync import after_drift

        after_drift(ctx.settings, doc)  # a run of the MLflow drift experiment (when MLflow is on)
        alerts.post_drift(doc, "cli", ctx.settings)  # the warehouse check's decision drives retraining

    def human() -> None:
        out.print(f"decision: {doc['decision']} (score {doc['score']:.3f}; retrain above "
                  f"{ctx.settings.drift_retrain_score}, warning above {ctx.settings.drift_warning_score})")  # fmt: skip
        out.print(f"kl {doc['kl_divergence']:.4f}  mean shift {doc['mean_shift']:+.3f}  median shift "
                  f"{doc['median_shift']:+.2f}  psi {doc['psi']:.4f}  ks {doc['ks_statistic']:.4f}  "
                  f"n current {doc['n_current']:,}")  # fmt: skip
        for reason in doc.get("reasons", []):
            out.print(f"  - {reason}")

    emit(ctx, doc, human)


def _simulation_table(doc: Simulation) -> None:
    rows = doc.weeks
    out.print(table("simulation", rows, ["week", "batch_id", "records", "buffered_records", "score", "decision",
                                         "retrained", "promoted", "champion_version"]))  # fmt: skip


@command(cli, "simulate")
@click.option("--weeks", type=click.IntRange(min=1, max=52), default=3, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--scale", type=click.Choice(["small", "medium", "large"]), default="small", show_default=True)
def simulate_cmd(ctx: Ctx, weeks: int, seed: int, scale: str) -> None:
    """Week by week: new batch → ingest → ETL → drift check → retrain when needed → publish."""
    from cinematch.pipelines.simulate import simulate

    say: Callable[[str], None] = (lambda line: None) if ctx.json else out.print
    doc = simulate(ctx.settings, weeks=weeks, seed=seed, scale=scale, say=say)
    emit(ctx, doc, lambda: _simulation_table(doc))


@command(cli, "demo")
@click.option("--ratings", type=click.Path(path_type=Path), default=None,
              help="Tell the story on this real rating history (its last 3 weeks) instead of generated data.")  # fmt: skip
@click.option("--movies", type=click.Path(path_type=Path), default=None, help="The history's movies file.")
def demo_cmd(ctx: Ctx, ratings: Path | None, movies: Path | None) -> None:
    """The main job: the 3-week simulation end to end (generated data, or a real history), then where to look."""
    from cinematch.core.settings import get_settings
    from cinematch.pipelines.simulate import demo_home, simulate

    home = demo_home(ctx.settings)
    settings = get_settings(home=home)
    say: Callable[[str], None] = (lambda line: None) if ctx.json else out.print
    say(f"CineMatch demo in {home}")
    if ratings is not None:
        _history_demo(ctx, settings, ratings, movies, say)
        return
    if movies is not None:
        raise BadInput("--movies goes with --ratings (the history whose movies they are)")
    doc = simulate(settings, say=say)
    from cinematch.pipelines.report import write_report
    from cinematch.storage.warehouse import query_rows, read_session

    with read_session(settings) as con:
        report = str(write_report(con, settings))
    with read_session(settings) as con:
        gold = {
            "trending_30d": query_rows(con, """select trending_rank as rank, title, n_ratings, round(avg_rating, 2)
                as avg_rating, round(velocity, 2) as velocity from gold.trending_movies where "window" = '30d'
                order by trending_rank limit 5"""),
            "genres_latest_month": query_rows(con, """select genre, n_ratings, round(avg_rating, 2) as avg_rating,
                round(share_of_ratings, 3) as share from gold.genre_analytics
                where month_start = (select max(month_start) from gold.genre_analytics)
                order by n_ratings desc limit 6"""),
            "content_top3": query_rows(con, """select views_rank as rank, title, views, unique_viewers,
                round(completion_rate, 3) as completion_rate, round(total_watch_hours, 1) as watch_hours
                from gold.content_performance order by views_rank limit 3"""),
        }  # fmt: skip
    doc = dataclasses.replace(doc, report=report, gold=gold)

    def human() -> None:
        _simulation_table(doc)
        out.print(table("top trending movies (30 days)", gold["trending_30d"]))
        out.print(table("genres in the latest month", gold["genres_latest_month"]))
        out.print(table("content performance: top 3 movies by views", gold["content_top3"]))
        if report:
            out.print(f"report: {report}")
        out.print(f"API: CINEMATCH_HOME={home} .venv/bin/cinematch serve   (then open http://127.0.0.1:8000/)")
        out.print(f'SQL: CINEMATCH_HOME={home} .venv/bin/cinematch sql "select * from gold.trending_movies limit 5"')

    emit(ctx, doc, human)


def _history_demo(ctx: Ctx, settings: Settings, ratings: Path, movies: Path | None, say: Callable[[str], None]) -> None:
    """The demo's story on a real history: its last 3 weeks replayed week by week under the drift policy."""
    from cinematch.pipelines.lineage_emit import step_run
    from cinematch.pipelines.replay_policy import parse_policy
    from cinematch.pipelines.replay_run import last_weeks_start, run_replay

    for path, option in ((ratings, "--ratings"), (movies, "--movies")):
        if path is not None and not path.is_file():
            raise BadInput(f"{option} {path}: no such file; give the path of the history's file")
    start = last_weeks_start(ratings)
    say(f"the last 3 weeks of {ratings.name} from {start:%Y-%m-%d}, one batch a week, retraining on drift")
    with step_run(settings, "replay", [p for p in (ratings, movies) if p is not None]):  # lineage, when on
        doc = run_replay(settings, ratings, movies, start, "7d", [parse_policy("drift")], say)

    def human() -> None:
        out.print(table("weeks", doc["periods"], ["period", "period_start", "n_ratings", "ndcg_at_10",
                                                   "hit_rate_at_10", "rmse", "drift_score", "decision", "retrained"]))  # fmt: skip
        out.print(doc["verdict"])
        out.print(f"report: {doc['report']}")
        home = Path(doc["folder"]) / "drift"
        out.print(f"API: CINEMATCH_HOME={home} .venv/bin/cinematch serve   (the replayed home)")

    emit(ctx, doc, human)


@command(cli, "retention")
@click.option("--apply", "apply_", is_flag=True, help="Delete the rows (default: only count them).")
def retention_cmd(ctx: Ctx, apply_: bool) -> None:
    """Per-layer retention: bronze by ingestion age, silver/gold by rating age (settings say how long)."""
    from cinematch.lakehouse.retention import apply_retention

    with write_session(ctx.settings, "retention") as con:
        doc = apply_retention(con, ctx.settings, dry_run=not apply_)

    def human() -> None:
        out.print(table("retention" + (" (dry run: pass --apply to delete)" if doc["dry_run"] else ""), doc["tables"]))

    emit(ctx, doc, human)


@command(cli, "report")
@click.option("--out", "out_file", type=click.Path(path_type=Path), default=None, help="Where to write the HTML.")
def report_cmd(ctx: Ctx, out_file: Path | None) -> None:
    """Write the HTML report (drift, quality, model history) and print its path."""
    from cinematch.pipelines.report import report_doc, write_report
    from cinematch.storage.warehouse import read_session

    with read_session(ctx.settings) as con:
        doc = report_doc(write_report(con, ctx.settings, out_file))
    emit(ctx, doc, lambda: out.print(doc["report"]))
