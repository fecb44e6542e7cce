"""Named evaluation protocols: the split registry, the paired bootstrap and the written top-k lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pytest
import scipy.stats

from cinematch.core.errors import BadInput
from cinematch.recommender.metrics import precision_at_k
from cinematch.recommender.protocols import PROTOCOLS, paired_bootstrap, split_protocol, write_lists
from cinematch.recommender.split import leave_last_n_split, random_per_user_split, temporal_cut_split


def ratings(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"user_id": rng.integers(1, 30, n), "movie_id": rng.integers(1, 400, n),
                          "rating": rng.integers(1, 11, n) / 2, "rated_at": rng.integers(0, 5_000, n)})  # fmt: skip
    return frame.drop_duplicates(["user_id", "movie_id"], ignore_index=True)


def pairs(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame["user_id"].tolist(), frame["movie_id"].tolist(), strict=True))


def test_protocol_names() -> None:
    assert PROTOCOLS == ("random_per_user", "temporal", "leave_last_n")


def test_split_protocol_dispatches_and_records_parameters() -> None:
    df = ratings()
    train, test, info = split_protocol(df, "random_per_user", seed=5, test_fraction=0.3)
    direct = random_per_user_split(df, test_fraction=0.3, seed=5)
    assert test.index.equals(direct.test.index) and train.index.equals(direct.train.index)
    assert info["protocol"] == "random_per_user" and info["seed"] == 5 and info["test_fraction"] == 0.3
    _, test, info = split_protocol(df, "temporal", seed=5, quantile=0.7)  # the seed plays no part
    assert test.index.equals(temporal_cut_split(df, quantile=0.7).test.index)
    assert info["protocol"] == "temporal" and info["quantile"] == 0.7 and "seed" not in info
    _, test, info = split_protocol(df, "leave_last_n", n=None)  # None takes the default n = 1
    assert test.index.equals(leave_last_n_split(df).test.index) and info["n"] == 1


def test_split_protocol_rejects_unknown_names_and_options() -> None:
    with pytest.raises(BadInput, match="random_per_user, temporal, leave_last_n"):
        split_protocol(ratings(), "holdout")
    with pytest.raises(BadInput, match="quantile"):
        split_protocol(ratings(), "temporal", n=3)


def test_split_does_not_depend_on_cinematch_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    df = ratings()
    monkeypatch.delenv("CINEMATCH_SEED", raising=False)
    before = {name: pairs(split_protocol(df, name).test) for name in PROTOCOLS}
    monkeypatch.setenv("CINEMATCH_SEED", "7")
    np.random.seed(7)  # nor on NumPy's global generator
    after = {name: pairs(split_protocol(df, name).test) for name in PROTOCOLS}
    assert after == before
    assert pairs(split_protocol(df, "random_per_user", seed=7).test) != before["random_per_user"]


def test_paired_bootstrap_of_constant_differences_has_zero_width() -> None:
    b = np.arange(50) * 0.5
    assert paired_bootstrap(b + 0.25, b) == (0.25, 0.25, 0.25)  # every resampled mean is exactly 0.25


def test_paired_bootstrap_covers_the_mean_with_the_normal_width() -> None:
    rng = np.random.default_rng(11)
    a = rng.normal(0.0, 1.0, 5_000)
    b = a - rng.normal(0.05, 1.0, 5_000)  # true mean difference 0.05, sd 1
    mean, low, high = paired_bootstrap(a, b, seed=1)
    diff = a - b
    assert mean == pytest.approx(diff.mean())
    assert low < mean < high and low < 0.05 < high
    # the percentile interval of a mean approaches mean +- 1.96 sd / sqrt(n) (width about 0.055 here)
    assert high - low == pytest.approx(2 * 1.96 * diff.std() / np.sqrt(diff.size), rel=0.1)
    assert paired_bootstrap(a, b, seed=1) == (mean, low, high)
    assert paired_bootstrap(a, b, seed=2) != (mean, low, high)
    # a narrower confidence gives a narrower interval
    _, low90, high90 = paired_bootstrap(a, b, confidence=0.9, seed=1)
    assert low < low90 < high90 < high


def test_paired_bootstrap_matches_scipy_percentile_bootstrap() -> None:
    # the docstring claims the same resamples as SciPy's paired percentile bootstrap for the same seed
    rng = np.random.default_rng(5)
    a, b = rng.uniform(0, 1, 700), rng.uniform(0, 1, 700)
    _, low, high = paired_bootstrap(a, b, n_resamples=500, seed=3)
    ref = scipy.stats.bootstrap((a, b), lambda x, y, axis: np.mean(x - y, axis=axis), paired=True, vectorized=True,
                                n_resamples=500, method="percentile", rng=np.random.default_rng(3))  # fmt: skip
    assert (low, high) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high), rel=1e-9)


def test_paired_bootstrap_rejects_bad_input() -> None:
    with pytest.raises(BadInput):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(BadInput):
        paired_bootstrap([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(BadInput):
        paired_bootstrap([], [])
    with pytest.raises(BadInput):
        paired_bootstrap([1.0], [2.0], confidence=1.0)


def test_write_lists_writes_ranks_and_skips_empty_slots(tmp_path: Path) -> None:
    path = tmp_path / "lists.csv"
    written = write_lists(path, np.array([5, 7, 9]), np.array([[3, -1, -1], [4, 9, 2], [-1, -1, -1]]))
    assert written == 4
    assert path.read_text() == "user_id,rank,movie_id\n5,1,3\n7,1,4\n7,2,9\n7,3,2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["lists.csv"]  # no partial file left behind


def test_written_lists_reproduce_the_metrics(tmp_path: Path) -> None:
    users = np.array([1, 2, 3])
    recommended = np.array([[1, 3, 2], [5, 1, 4], [2, 4, -1]])
    truth = (np.array([1, 1, 2, 3]), np.array([2, 9, 4, 2]), np.array([5.0, 5.0, 5.0, 5.0]))
    write_lists(tmp_path / "lists.csv", users, recommended)
    lists = pacsv.read_csv(tmp_path / "lists.csv").to_pandas()
    back = np.full((3, 3), -1)
    back[lists["user_id"].to_numpy() - 1, lists["rank"].to_numpy() - 1] = lists["movie_id"].to_numpy()
    assert np.array_equal(back, recommended)
    # hits: user 1 item 2 (rank 3), user 2 item 4 (rank 3), user 3 item 2 (rank 1): (1 + 1 + 1) / 3 / 3
    assert precision_at_k(users, back, *truth, k=3, threshold=0.0) == pytest.approx(1 / 3)


def test_write_lists_names_an_unwritable_path(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="cannot write lists"):
        write_lists(tmp_path / "missing" / "lists.csv", np.array([1]), np.array([[1]]))
    with pytest.raises(BadInput):
        write_lists(tmp_path / "lists.csv", np.array([1, 2]), np.array([[1]]))
