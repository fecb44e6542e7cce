"""`cinematch replay`: policies, a --compare run on generated data with a known drift week, a hand-made replay
that must give the same period metrics, and a replay killed with SIGKILL then run again."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from tests.openlineage_schema import validate_event

from cinematch.core.errors import BadInput
from cinematch.core.settings import Settings
from cinematch.datasets.generate import generate_dataset
from cinematch.datasets.generate_config import GenerateConfig
from cinematch.drift.check import check_drift
from cinematch.ingest.bronze import ingest_file
from cinematch.lakehouse.etl import run_etl
from cinematch.pipelines.replay_policy import parse_policies, parse_policy
from cinematch.pipelines.replay_report import tradeoff_plot
from cinematch.pipelines.replay_run import ReplayRun, run_replay, summarize, verdict
from cinematch.pipelines.report import write_report
from cinematch.recommender import registry
from cinematch.serving.layout import current_views
from cinematch.serving.publish import publish
from cinematch.storage.warehouse import read_session, write_session

DRIFT_WEEK = 2
WEEKS = 4
COLUMNS = ["user_id", "movie_id", "rating", "rated_at"]
METRICS = ("n_ratings", "n_users", "hit_rate_at_10", "ndcg_at_10", "coverage", "fallback_share", "rmse", "n_rmse",
           "n_unknown", "drift_score", "decision", "retrained", "promoted")  # fmt: skip


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, datetime]:
    """Generated ratings as one history file: a base, then 5 weeks whose 4th starts a drift."""
    out = tmp_path_factory.mktemp("replay-data")
    config = GenerateConfig(users=600, movies=400, ratings=30_000, weeks=WEEKS, batch_ratings=1_500,
                            drift_week=DRIFT_WEEK, seed=7)  # fmt: skip
    summary = generate_dataset(out / "gen", config)
    files = ["ratings.parquet"] + [f"batch_w{w}.parquet" for w in range(1, WEEKS + 1)]
    table = pa.concat_tables([pq.read_table(out / "gen" / f, columns=COLUMNS) for f in files])
    pq.write_table(table, out / "history.parquet")
    first = datetime.fromisoformat(summary["files"]["batch_w1"]["min_rated_at"])
    return out / "history.parquet", out / "gen" / "movies.csv", datetime.combine(first.date(), datetime.min.time())


@pytest.fixture(scope="module")
def compared(
    history: tuple[Path, Path, datetime], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, ReplayRun]:
    ratings, movies, start = history
    settings = Settings(home=tmp_path_factory.mktemp("replay-home"), api_key=None)
    run = run_replay(settings, ratings, movies, start, "7d", parse_policies((), compare=True))
    return settings, run


def rows_of(run: ReplayRun, policy: str) -> list[dict[str, Any]]:
    return [p for p in run["periods"] if p["policy"] == policy]


def test_policies_parse_and_decide() -> None:
    assert [p.name for p in parse_policies((), compare=True)] == ["drift", "always", "never", "every:4"]
    assert [p.name for p in parse_policies(("every:2",), compare=False, sweep=(0.5, 2))] == [
        "every:2", "drift@0.5", "drift@2"]  # fmt: skip
    every = parse_policy("every:3")
    assert [every.retrains(n, False, True) for n in range(1, 7)] == [False, False, True, False, False, True]
    assert parse_policy("always").retrains(1, False, True) and not parse_policy("always").retrains(1, True, False)
    assert not parse_policy("never").retrains(5, True, True)
    assert parse_policy("drift").retrains(2, True, True) and not parse_policy("drift").retrains(2, False, True)
    for bad in ("sometimes", "every:0", "every:x", "drift@", "drift@-1", ""):
        with pytest.raises(BadInput, match="is not a policy"):
            parse_policy(bad)


def test_verdict_compares_drift_with_always() -> None:
    def rows(ndcgs: list[float], retrained: list[bool]) -> list[dict[str, Any]]:
        return [{"ndcg_at_10": n, "hit_rate_at_10": n, "rmse": 1.0, "retrained": r, "seconds": 1.0}
                for n, r in zip(ndcgs, retrained, strict=True)]  # fmt: skip

    summary = [summarize("drift", rows([0.2, 0.2, 0.17], [False, True, False])),
               summarize("always", rows([0.2, 0.2, 0.2], [True, True, True]))]  # fmt: skip
    assert summary[0]["mean_ndcg_at_10"] == pytest.approx(0.19) and summary[0]["retrains"] == 1
    assert verdict(summary) == ("drift-triggered retraining (drift) kept 95% of always-retrain's mean NDCG@10 with "
                                "33% of its retrains (1 vs 3)")  # fmt: skip


def test_compare_on_a_known_drift_week(compared: tuple[Settings, ReplayRun]) -> None:
    _, run = compared
    assert run["policies"] == ["drift", "always", "never", "every:4"]
    assert len(run["periods"]) == 4 * WEEKS
    assert 0 < run["base_seconds"] < run["seconds"]  # this run built the base
    assert all({"ndcg_at_10", "hit_rate_at_10"} <= set(p) for p in run["periods"])
    drift = rows_of(run, "drift")
    retrained = [p["period"] for p in drift if p["retrained"]]
    # the drift policy retrains in or after the drift week, never before it, and does retrain on the drift
    assert retrained and min(retrained) >= DRIFT_WEEK, [(p["period"], p["decision"], p["drift_score"]) for p in drift]
    assert [p["retrained"] for p in rows_of(run, "always")] == [True] * WEEKS
    assert not any(p["retrained"] for p in rows_of(run, "never"))
    assert [p["period"] for p in rows_of(run, "every:4") if p["retrained"]] == [4]
    # before the first retrain every policy served the same base model: the same scores
    first = {pol: rows_of(run, pol)[0] for pol in run["policies"]}
    assert len({(r["model_version"], r["ndcg_at_10"], r["rmse"]) for r in first.values()}) == 1
    for p in run["periods"]:
        assert 0 <= p["hit_rate_at_10"] <= 1 and 0 <= p["ndcg_at_10"] <= p["hit_rate_at_10"]
        assert p["n_ratings"] == 1_500 and 0 < p["rmse"] < 2
    assert run["verdict"].startswith("drift-triggered retraining (drift) kept ")
    assert Path(run["report"]).read_text().count("<svg") >= 4


def test_replay_leaves_the_users_warehouse_alone_but_keeps_the_rows(compared: tuple[Settings, ReplayRun]) -> None:
    settings, run = compared
    with read_session(settings) as con:
        assert con.execute("select count(*) from bronze.ratings_buffer").fetchall()[0][0] == 0
        assert registry.champion(con) is None
        stored = con.execute(
            "select policy, period, ndcg_at_10, status from ops.replay_periods where replay_id = ? order by all",
            [run["replay_id"]],
        ).fetchall()
    assert len(stored) == 4 * WEEKS and {s[3] for s in stored} == {"done"}
    by_key = {(p["policy"], p["period"]): p["ndcg_at_10"] for p in run["periods"]}
    assert all(by_key[(pol, n)] == pytest.approx(v) for pol, n, v, _ in stored)
    with read_session(settings) as con:  # `cinematch report` shows the latest replay
        page = write_report(con, settings).read_text()
    assert f"Replay {run['replay_id']}" in page and escape(run["verdict"]) in page


def _hand_scores(home: Settings, actual: pa.Table) -> dict[str, Any]:
    """The period's scores computed here, user by user, from the published views file and the model."""
    views = duckdb.connect(str(current_views(home)), read_only=True)
    version = views.execute("select model_version from meta").fetchall()[0][0]
    lists: dict[int, list[int]] = {}
    for user, movie in views.execute("select user_id, movie_id from recommendations where rank <= 10 "
                                     "order by user_id, rank").fetchall():  # fmt: skip
        lists.setdefault(user, []).append(movie)
    fallback = [m for (m,) in views.execute("select movie_id from fallback where rank <= 10 order by rank").fetchall()]
    views.close()
    rated: dict[int, set[int]] = {}
    for user, movie in zip(actual["user_id"].to_pylist(), actual["movie_id"].to_pylist(), strict=True):
        rated.setdefault(user, set()).add(movie)
    ndcgs, hits, on_fallback, served = [], [], [], set()
    for user, relevant in rated.items():
        top = lists.get(user, fallback)[:10]
        served.update(top)
        dcg = sum(1 / math.log2(i + 2) for i, m in enumerate(top) if m in relevant)
        ideal = sum(1 / math.log2(i + 2) for i in range(min(10, len(relevant))))
        ndcgs.append(dcg / ideal)
        hits.append(dcg > 0)
        on_fallback.append(user not in lists)
    with read_session(home) as con:
        n_movies = con.execute("select count(*) from silver.movies").fetchall()[0][0]
    model = registry.load_model(home, version)
    pred, unknown = model.predict(actual["user_id"].to_numpy(), actual["movie_id"].to_numpy())
    truth = actual["rating"].to_numpy()
    return {"model_version": version, "n_users": len(rated), "ndcg_at_10": float(np.mean(ndcgs)),
            "hit_rate_at_10": float(np.mean(hits)), "fallback_share": float(np.mean(on_fallback)),
            "coverage": len(served) / n_movies, "n_rmse": int((~unknown).sum()), "n_unknown": int(unknown.sum()),
            "rmse": float(np.sqrt(np.mean((truth[~unknown] - pred[~unknown]) ** 2)))}  # fmt: skip


def test_a_hand_made_replay_gives_the_same_period_metrics(
    history: tuple[Path, Path, datetime], compared: tuple[Settings, ReplayRun], tmp_path: Path
) -> None:
    """The `never` policy by hand, from a copy of the replay's base home: score, ingest, ETL, drift, publish."""
    ratings, _, start = history
    _, run = compared
    shutil.copytree(Path(run["folder"]) / "base", tmp_path / "hand", ignore=shutil.ignore_patterns("*.lock"))
    home = Settings(home=tmp_path / "hand", api_key=None)
    table = pq.read_table(ratings)
    expected = rows_of(run, "never")
    for week, row in enumerate(expected):
        lo, hi = start + timedelta(days=7 * week), start + timedelta(days=7 * (week + 1))
        mask = pc.and_(pc.greater_equal(table["rated_at"], pa.scalar(lo, pa.timestamp("us"))),
                       pc.less(table["rated_at"], pa.scalar(hi, pa.timestamp("us"))))  # fmt: skip
        actual = table.filter(mask)
        hand = _hand_scores(home, actual)
        for key, value in hand.items():
            assert row[key] == (pytest.approx(value, rel=1e-9) if isinstance(value, float) else value), (week, key)
        pq.write_table(actual, tmp_path / f"week{week}.parquet")
        with write_session(home) as con:
            ingest_file(con, tmp_path / f"week{week}.parquet", batch_id=f"period-{week + 1:04d}")
            run_etl(con, home, write_lake=False)
            drift = check_drift(con, home)
            publish(con, home)
        assert (row["decision"], row["drift_score"]) == (drift["decision"], pytest.approx(drift["score"]))


def processes_with(home: str) -> list[int]:
    """Pids of live processes whose environment names ``home`` as CINEMATCH_HOME (a replay and its workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = next(x for x in (entry / "status").read_text().splitlines() if x.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if f"CINEMATCH_HOME={home}".encode() in environ and "zombie" not in state:
            found.append(int(entry.name))
    return found


def test_a_replay_killed_midway_finishes_identically(
    history: tuple[Path, Path, datetime], compared: tuple[Settings, ReplayRun], tmp_path: Path
) -> None:
    ratings, movies, start = history
    _, reference = compared
    env = {**os.environ, "CINEMATCH_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    args = [sys.executable, "-m", "cinematch", "replay", "--ratings", str(ratings), "--movies", str(movies),
            "--start", f"{start:%Y-%m-%d}", "--every", "7d", "--policy", "always", "--policy", "never",
            "--workers", "2"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:  # period 2 is done: kill while period 3 is scored, ingested, checked or trained
        if line.startswith("always period 2/"):
            # the policy's home names the period it plays (pipelines/replay.py mark_period); a fixed sleep was
            # outrun once the remaining periods took under 3 s
            marks = (tmp_path / "home" / "replays").glob("*/always/PERIOD")
            deadline = time.monotonic() + 60
            while not any(m.read_text() == "3" for m in marks) and time.monotonic() < deadline:
                time.sleep(0.01)
                marks = (tmp_path / "home" / "replays").glob("*/always/PERIOD")
            time.sleep(0.2)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=600)
    assert proc.returncode == -signal.SIGKILL
    # the policies' worker processes die with the replay: nothing keeps writing into its homes
    deadline = time.monotonic() + 10
    while (left := processes_with(env["CINEMATCH_HOME"])) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left
    done = subprocess.run([*args, "--json"], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]

    rerun = json.loads(done.stdout)
    assert rerun["replay_id"] == reference["replay_id"]  # same history, start and period length
    assert rerun["base_seconds"] < 1  # built before the kill: the rerun only finds it
    want = rows_of(reference, "always") + rows_of(reference, "never")
    assert len(rerun["periods"]) == len(want) == 2 * WEEKS
    for got, ref in zip(rerun["periods"], want, strict=True):
        for key in METRICS:
            same = (
                got[key] == pytest.approx(ref[key], rel=1e-9) if isinstance(ref[key], float) else got[key] == ref[key]
            )
            assert same, (got["period"], key, got[key], ref[key])


def test_demo_tells_the_story_on_a_real_history(
    history: tuple[Path, Path, datetime], cli, home: Settings, tmp_path: Path
) -> None:
    ratings, movies, _ = history
    last = pc.max(pq.read_table(ratings)["rated_at"]).as_py()
    events_file = tmp_path / "lineage.jsonl"  # OpenLineage on: the demo's run, its replay a child run
    result = cli("demo", "--ratings", ratings, "--movies", movies, "--json", timeout=600,
                 env={"CINEMATCH_OPENLINEAGE_URL": f"file://{events_file}"})  # fmt: skip
    assert result.code == 0, result.stderr[-2000:]
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    assert [(e["eventType"], e["job"]["name"]) for e in events] == [
        ("START", "cinematch.demo"), ("START", "cinematch.demo.replay"), ("COMPLETE", "cinematch.demo.replay"),
        ("COMPLETE", "cinematch.demo")]  # fmt: skip
    for event in events:
        validate_event(event)
    files = {p.resolve().as_posix().lstrip("/") for p in (ratings, movies)}
    assert {d["name"] for d in events[0]["inputs"]} == files == {d["name"] for d in events[1]["inputs"]}
    assert [d["name"] for d in events[2]["outputs"]] == ["warehouse.ops.replay_periods"]
    assert events[2]["outputs"][0]["namespace"].endswith(home.duckdb_path.resolve().as_posix())  # the demo's home
    assert events[2]["run"]["facets"]["parent"]["run"]["runId"] == events[0]["run"]["runId"]
    doc = json.loads(result.stdout)
    assert doc["policies"] == ["drift"] and len(doc["periods"]) == 3
    first = datetime.fromisoformat(doc["periods"][0]["period_start"])
    # three whole weeks ending with the history's last day
    assert first == datetime.combine(last.date(), datetime.min.time()) + timedelta(days=1 - 21)
    assert (
        sum(p["n_ratings"] for p in doc["periods"])
        == pc.sum(pc.greater_equal(pq.read_table(ratings)["rated_at"], pa.scalar(first, pa.timestamp("us")))).as_py()
    )
    assert all(p["ndcg_at_10"] is not None for p in doc["periods"]) and doc["verdict"]
    refused = cli("demo", "--movies", movies)
    assert refused.code == 2 and "--movies goes with --ratings" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_an_ml100k_history_with_an_empty_week(history: tuple[Path, Path, datetime], tmp_path: Path) -> None:
    """The same history as ml-100k u.data (tab-separated, epoch seconds) with week 2 cut out: that period is
    empty (scored as nothing, no batch, no retrain) and the replay goes on."""
    ratings, movies, start = history
    table = pq.read_table(ratings)
    cut = pc.and_(pc.greater_equal(table["rated_at"], pa.scalar(start + timedelta(days=7), pa.timestamp("us"))),
                  pc.less(table["rated_at"], pa.scalar(start + timedelta(days=14), pa.timestamp("us"))))  # fmt: skip
    kept = table.filter(pc.invert(cut))
    seconds = pc.divide(kept["rated_at"].cast(pa.int64()), 1_000_000).to_numpy()
    lines = np.column_stack([kept["user_id"].to_numpy(), kept["movie_id"].to_numpy(),
                             kept["rating"].to_numpy(), seconds])  # fmt: skip
    path = tmp_path / "u.data"
    np.savetxt(path, lines, fmt=["%d", "%d", "%g", "%d"], delimiter="\t")
    settings = Settings(home=tmp_path / "home", api_key=None)
    run = run_replay(settings, path, movies, start, "7d", [parse_policy("always")], report=False)
    assert run["n_base"] == table.num_rows - 1_500 * WEEKS and run["n_invalid"] == 0
    periods = run["periods"]
    assert [p["n_ratings"] for p in periods] == [1_500, 0, 1_500, 1_500]
    empty = periods[1]
    assert (empty["n_users"], empty["ndcg_at_10"], empty["rmse"], empty["retrained"]) == (0, None, None, False)
    assert [p["retrained"] for p in periods] == [True, False, True, True]
    assert "report" not in run and run["summary"][0]["scored_periods"] == 3


def test_the_sweep_trade_off_plot() -> None:
    def policy(name: str, ndcg: float, retrains: int) -> dict[str, Any]:
        return {"policy": name, "mean_ndcg_at_10": ndcg, "retrains": retrains}

    summary = [
        policy("drift", 0.18, 2),
        policy("always", 0.2, 8),
        policy("drift@2", 0.16, 1),
        policy("drift@0.5", 0.19, 4),
    ]
    svg = tradeoff_plot(summary, default_threshold=1.0)
    assert svg is not None and "share of always-retrain" in svg
    # ordered by threshold (plain drift retrains at the settings' 1.0), values as shares of always-retrain
    assert svg.index(">drift@0.5<") < svg.index(">drift<") < svg.index(">drift@2<")
    assert "drift@0.5 mean NDCG@10: 95%" in svg and "drift@2 retrains: 12%" in svg
    assert tradeoff_plot(summary[:2]) is None  # one drift policy: nothing to trade off
