"""Fits kept for the policies of a replay: the same rows in any order give the stored fit, bit for bit; other
rows, parameters or a search are fitted afresh; a half-written entry is never read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from cinematch.datasets.generate import generate_tables
from cinematch.datasets.generate_config import GenerateConfig
from cinematch.recommender.als_params import ALSParams
from cinematch.recommender.fit_cache import ENTRY, CachedTrainer
from cinematch.recommender.interactions import histories
from cinematch.recommender.trainer import LOCAL
from cinematch.recommender.training_set import stable_split
from cinematch.recommender.tuning import RankingConfig, select

PARAMS = ALSParams(rank=6, iterations=4, seed=3)
CONFIG = RankingConfig(seed=3)


@pytest.fixture(scope="module")
def train() -> pa.Table:
    ratings = generate_tables(GenerateConfig(users=200, movies=120, ratings=5_000, weeks=1, batch_ratings=200,
                                             seed=11))["ratings"]  # fmt: skip
    return stable_split(ratings)[0]


@pytest.fixture(scope="module")
def choice(train: pa.Table) -> dict:
    return select(train, CONFIG, full=False).choice.as_dict()


def shuffled(table: pa.Table, seed: int) -> pa.Table:
    return table.take(np.random.default_rng(seed).permutation(table.num_rows))


def test_the_same_rows_in_another_order_load_the_stored_fit(train: pa.Table, choice: dict, tmp_path: Path) -> None:
    first, second = CachedTrainer(LOCAL, tmp_path), CachedTrainer(LOCAL, tmp_path)
    made = first.fit_ratings(shuffled(train, 1), PARAMS, None)
    ranked = first.fit_ranking(shuffled(train, 1), CONFIG, choice, False, None)
    assert first.hits == 0 and len(list(tmp_path.glob(f"*/{ENTRY}"))) == 2

    loaded = second.fit_ratings(shuffled(train, 2), PARAMS, None)
    reused = second.fit_ranking(shuffled(train, 2), CONFIG, choice, False, None)
    assert second.hits == 2
    for name in ("user_factors", "item_factors"):
        assert np.array_equal(getattr(made, name), getattr(loaded, name))
    hist = histories(train, ranked.ranker.item_ids)
    users = np.unique(train.column("user_id").to_numpy())
    assert np.array_equal(ranked.ranker.recommend(hist, users, 10)[0], reused.ranker.recommend(hist, users, 10)[0])
    assert reused.choice.as_dict() == ranked.choice.as_dict() and reused.catalogue == ranked.catalogue
    # charged what the fits cost when they were made, not what loading them cost
    assert second.fit_seconds_reused == pytest.approx(reused.seconds + _als_seconds(tmp_path))
    assert second.charged_seconds == pytest.approx(max(0.0, second.fit_seconds_reused - second.load_seconds))

    # order never matters, even without a store: the fit sees the rows sorted
    fresh = CachedTrainer(LOCAL, tmp_path / "other").fit_ratings(shuffled(train, 3), PARAMS, None)
    assert np.array_equal(fresh.item_factors, made.item_factors)


def _als_seconds(folder: Path) -> float:
    import json

    (entry,) = folder.glob(f"als-*/{ENTRY}")
    return float(json.loads(entry.read_text())["seconds"])


def test_other_rows_parameters_or_a_search_are_fitted_afresh(train: pa.Table, choice: dict, tmp_path: Path) -> None:
    trainer = CachedTrainer(LOCAL, tmp_path)
    trainer.fit_ratings(train, PARAMS, None)
    changed = train.set_column(2, "rating", pa.array(np.r_[train.column("rating").to_numpy()[:-1], 0.5]))
    trainer.fit_ratings(changed, PARAMS, None)
    trainer.fit_ratings(train, ALSParams(rank=7, iterations=4, seed=3), None)
    assert trainer.hits == 0 and len(list(tmp_path.glob("als-*"))) == 3
    searched = trainer.fit_ranking(train, CONFIG, None, True, None)  # a search: never kept
    assert searched.candidates and not list(tmp_path.glob("ranking-*"))
    trainer.fit_ranking(train, CONFIG, choice, False, None)
    trainer.fit_ranking(train, CONFIG, {**choice, "rating_weight": 0.5}, False, None)
    assert trainer.hits == 0 and len(list(tmp_path.glob("ranking-*"))) == 2


def test_a_damaged_entry_is_not_read_and_is_replaced(train: pa.Table, tmp_path: Path) -> None:
    CachedTrainer(LOCAL, tmp_path).fit_ratings(train, PARAMS, None)
    (entry,) = tmp_path.glob("als-*")
    (entry / ENTRY).unlink()  # damaged: an entry is renamed into place only after fit.json is written
    again = CachedTrainer(LOCAL, tmp_path)
    model = again.fit_ratings(train, PARAMS, None)
    assert again.hits == 0 and (entry / ENTRY).is_file() and model.item_factors.shape[1] == PARAMS.rank
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no private copy left behind


def _claimed_fit(folder: str, ready: str) -> None:
    """In another process: claim the rows, signal, take a while, then store both fits (as a prefetching worker)."""
    import time

    from tests.recommender.test_fit_cache import CONFIG, PARAMS

    table = stable_split(generate_tables(GenerateConfig(users=200, movies=120, ratings=5_000, weeks=1,
                                                        batch_ratings=200, seed=11))["ratings"])[0]  # fmt: skip
    trainer = CachedTrainer(LOCAL, Path(folder))
    with trainer.claim(table):
        Path(ready).write_text("")
        time.sleep(0.6)
        trainer.fit_ratings(table, PARAMS, None)
        trainer.fit_ranking(table, CONFIG, select(table, CONFIG, full=False).choice.as_dict(), False, None)


class _NeverFits:
    """The local trainer's identity (engine) without its fits: any fit here fails the test."""

    engine = LOCAL.engine

    def fit_ratings(self, *args: object) -> None:
        raise AssertionError("fitted instead of waiting for the claimed fit")

    def fit_ranking(self, *args: object) -> None:
        raise AssertionError("fitted instead of waiting for the claimed fit")


def test_a_fit_claimed_by_another_process_is_awaited_not_made_again(
    train: pa.Table, choice: dict, tmp_path: Path
) -> None:
    import multiprocessing
    import subprocess
    import time

    ready = tmp_path / "ready"
    worker = multiprocessing.get_context("spawn").Process(target=_claimed_fit, args=(str(tmp_path), str(ready)))
    worker.start()
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        waiting = CachedTrainer(_NeverFits(), tmp_path)  # type: ignore[arg-type]
        waiting.fit_ratings(train, PARAMS, None)
        waiting.fit_ranking(train, CONFIG, choice, False, None)
    finally:
        worker.join(120)
    assert waiting.hits == 2 and waiting.waited_seconds >= 0.4
    # the wait is idle time, not compute: the charge is the fits' cost less the load and the wait
    expected = waiting.fit_seconds_reused - waiting.load_seconds - waiting.waited_seconds
    assert waiting.charged_seconds == pytest.approx(max(0.0, expected))

    # a claim left by a process that is gone (a killed replay) is not waited for
    gone = subprocess.Popen(["true"])
    gone.wait()
    other = tmp_path / "other"
    stale = CachedTrainer(LOCAL, other)
    stale.folder.mkdir()
    _, digest = stale._canonical(train)
    stale._claim_path(digest).write_text(str(gone.pid))
    stale.fit_ratings(train, PARAMS, None)
    assert stale.hits == 0 and stale.waited_seconds == 0.0
