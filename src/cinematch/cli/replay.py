"""`cinematch replay`: play a real rating history period by period and compare retraining policies."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import click

from cinematch.cli.app import Ctx, cli, command, emit, out, table
from cinematch.core.errors import BadInput


def _existing(path: Path, option: str) -> Path:
    if not path.is_file():
        raise BadInput(f"{option} {path}: no such file; give the path of a ratings history file")
    return path


def _moment(ctx: click.Context, param: click.Parameter, value: str) -> datetime:
    """An ISO 8601 date, or date and time with an optional UTC offset (``2020-01-08``, ``2020-01-08T12:00:00``,
    ``2020-01-08T12:00:00+02:00``, ``...Z``); the replay converts it to UTC, a naive one being UTC already."""
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO date or time; use e.g. 2020-01-08, "
                                 "2020-01-08T12:00:00 (UTC) or 2020-01-08T12:00:00+02:00", ctx, param) from None  # fmt: skip


@command(cli, "replay")
@click.option("--ratings", "ratings", type=click.Path(path_type=Path), required=True,
              help="The rating history (any format `ingest` reads).")  # fmt: skip
@click.option("--movies", "movies", type=click.Path(path_type=Path), default=None, help="Its movies file.")
@click.option("--start", "start", metavar="DATE", callback=_moment, required=True,
              help="Everything before this moment is the base; each period after it one batch. An ISO date or "
                   "time; with an offset (+02:00, Z) it is converted to UTC, without one it is UTC.")  # fmt: skip
@click.option("--every", default="7d", show_default=True, help="Period length: <N>d or <N>mo (calendar months).")
@click.option("--policy", "policies", multiple=True,
              help="drift (default), drift@SCORE, always, never or every:N; repeat to run several.")  # fmt: skip
@click.option("--compare", is_flag=True, help="Also run drift, always, never and every:4 and judge them.")
@click.option("--sweep", "sweep", default="",
              help="Comma-separated drift retrain scores to run as drift@SCORE policies (a trade-off curve).")  # fmt: skip
@click.option("--workers", "workers", type=click.IntRange(min=1), default=None,
              help="Policies played at once, each in its own process (default: one per core).")  # fmt: skip
def replay_cmd(
    ctx: Ctx,
    ratings: Path,
    movies: Path | None,
    start: datetime,
    every: str,
    policies: tuple[str, ...],
    compare: bool,
    sweep: str,
    workers: int | None,
) -> None:
    """Replay a rating history through ingest → ETL → drift → retrain → publish, scoring each next period."""
    from cinematch.pipelines.replay_policy import parse_policies
    from cinematch.pipelines.replay_run import run_replay

    try:
        thresholds = tuple(float(t) for t in sweep.split(",") if t.strip())
    except ValueError:
        raise BadInput(f"--sweep {sweep!r}: give comma-separated numbers, e.g. 0.5,1,2") from None
    chosen = parse_policies(policies, compare, thresholds)
    say: Callable[[str], None] | None = None if ctx.json else out.print  # --json: stdout holds the document only
    doc = run_replay(ctx.settings, _existing(ratings, "--ratings"), _existing(movies, "--movies") if movies else None,
                     start, every, chosen, say, workers=workers)  # fmt: skip

    def human() -> None:
        out.print(table("policies", doc["summary"]))
        out.print(doc["verdict"])
        if doc.get("report"):
            out.print(f"report: {doc['report']}")

    emit(ctx, doc, human)
