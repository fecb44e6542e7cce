"""Fits shared between the policies of a replay (recommender/fit_cache.py) and made ahead by a free worker
(pipelines/replay_prefetch.py): they are exactly the fits the policy makes, a policy reusing one is charged its
cost, and sharing changes no period's metrics."""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cinematch.core.settings import Settings
from cinematch.datasets.generate import generate_dataset
from cinematch.datasets.generate_config import GenerateConfig
from cinematch.datasets.periods import parse_every
from cinematch.pipelines.replay import FITS, PLAYED_FILE, mark_period
from cinematch.pipelines.replay_data import prepare
from cinematch.pipelines.replay_policy import parse_policy
from cinematch.pipelines.replay_prefetch import prefetch
from cinematch.pipelines.replay_run import ReplayRun, run_replay
from cinematch.pipelines.replay_workers import _start_worker
from cinematch.recommender import registry
from cinematch.recommender.als import ALSModel
from cinematch.recommender.fit_cache import ENTRY

WEEKS = 4
METRICS = ("n_ratings", "hit_rate_at_10", "ndcg_at_10", "coverage", "fallback_share", "rmse", "drift_score",
           "retrained", "promoted")  # fmt: skip


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, datetime]:
    out = tmp_path_factory.mktemp("fits-data")
    config = GenerateConfig(users=300, movies=250, ratings=12_000, weeks=WEEKS, batch_ratings=800, seed=13)
    summary = generate_dataset(out / "gen", config)
    files = ["ratings.parquet"] + [f"batch_w{w}.parquet" for w in range(1, WEEKS + 1)]
    columns = ["user_id", "movie_id", "rating", "rated_at"]
    pq.write_table(pa.concat_tables([pq.read_table(out / "gen" / f, columns=columns) for f in files]),
                   out / "history.parquet")  # fmt: skip
    first = datetime.fromisoformat(summary["files"]["batch_w1"]["min_rated_at"])
    return out / "history.parquet", out / "gen" / "movies.csv", datetime.combine(first.date(), datetime.min.time())


@pytest.fixture(scope="module")
def sequential(
    history: tuple[Path, Path, datetime], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, ReplayRun, list[str]]:
    """always, then every:2 in one process: every:2 finds each of its fits made by always (the log says so)."""
    ratings, movies, start = history
    settings = Settings(home=tmp_path_factory.mktemp("fits-seq"), api_key=None)
    logger = logging.getLogger("cinematch.recommender.fit_cache")
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        policies = [parse_policy("always"), parse_policy("every:2"), parse_policy("never")]
        run = run_replay(settings, ratings, movies, start, "7d", policies, report=False, workers=1)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return settings, run, seen


def rows(run: ReplayRun, policy: str) -> list[dict]:
    return [p for p in run["periods"] if p["policy"] == policy]


def test_a_policy_reuses_the_fits_another_made_and_is_charged_for_them(sequential) -> None:
    _, run, seen = sequential
    every = rows(run, "every:2")
    assert [r["retrained"] for r in every] == [False, True, False, True]
    reused = [line for line in seen if line.startswith("event=fit_reused ")]
    assert len(reused) == 2 * 2  # the rating and the ranking fit of periods 2 and 4
    always = {r["period"]: r for r in rows(run, "always")}
    for row in every:
        if row["retrained"]:
            # charged the fit's cost: its retrain costs about what always's retrain on the same rows did
            assert row["seconds"] >= 0.5 * always[row["period"]]["seconds"]
    assert not (Path(run["folder"]) / FITS).exists()  # kept only while the replay plays


def test_prefetched_fits_are_the_ones_the_policy_made(history, sequential, tmp_path: Path) -> None:
    """A free worker fits always's periods 3 and 4 while always plays period 1: bit for bit always's own fits."""
    ratings, movies, start = history
    settings, run, _ = sequential
    plan = prepare(settings, ratings, movies, start, parse_every("7d"))
    home = plan.policy_home("always")
    (home / PLAYED_FILE).unlink()
    mark_period(home, 1)
    policies = [parse_policy("always"), parse_policy("never")]
    assert prefetch(settings, plan, policies) == 2  # periods 3 and 4; period 2 is left to always itself
    entries = sorted((plan.folder / FITS).glob(f"als-*/{ENTRY}"))
    assert len(entries) == 2 and len(list((plan.folder / FITS).glob(f"ranking-*/{ENTRY}"))) == 2
    fitted = [ALSModel.load(e.parent) for e in entries]
    always_settings = Settings(home=home, api_key=None)
    for period in (3, 4):
        version = rows(run, "always")[period - 1]["new_version"]
        own = registry.load_model(always_settings, version)
        assert sum(np.array_equal(own.item_factors, f.item_factors) for f in fitted) == 1, period
    # nothing is fitted for a policy that has finished, or for one whose next period is the last
    (home / PLAYED_FILE).write_text("")
    assert prefetch(settings, plan, policies) == 0


def test_sharing_and_fitting_ahead_change_no_metric(history, sequential, tmp_path: Path) -> None:
    """The same replay with two workers (fits shared both ways, and made ahead) gives every period's metrics."""
    ratings, movies, start = history
    _, reference, _ = sequential
    settings = Settings(home=tmp_path / "par", api_key=None)
    policies = [parse_policy("always"), parse_policy("every:2"), parse_policy("never")]
    run = run_replay(settings, ratings, movies, start, "7d", policies, report=False, workers=2)
    assert len(run["periods"]) == len(reference["periods"]) == 3 * WEEKS
    for got, want in zip(run["periods"], reference["periods"], strict=True):
        for key in METRICS:
            same = (
                got[key] == pytest.approx(want[key], rel=1e-9)
                if isinstance(want[key], float)
                else got[key] == want[key]
            )
            assert same, (got["policy"], got["period"], key, got[key], want[key])
    assert run["summary"][0]["retrains"] == 4 and not (Path(run["folder"]) / FITS).exists()


def _threads_seen() -> tuple[set[int], int, list[int]]:
    from threadpoolctl import threadpool_info

    from cinematch.recommender.als_solver import default_threads

    blas = [int(i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]
    return os.sched_getaffinity(0), default_threads(), blas


def test_each_worker_keeps_to_one_core_with_one_thread() -> None:
    """With a worker per core, the second worker started is on the second core, its pools one thread wide."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("one core: the workers are not pinned")
    context = multiprocessing.get_context("spawn")
    started = context.Value("i", 1)  # as if one worker had started already
    with ProcessPoolExecutor(1, mp_context=context, initializer=_start_worker, initargs=(started, cores)) as pool:
        affinity, threads, blas = pool.submit(_threads_seen).result()
    assert affinity == {cores[1]} and threads == 1 and blas and set(blas) == {1}
    assert started.value == 2
