"""Random and temporal splits: sizes, seeding, time ordering, input types."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cinematch.errors import BadInput
from cinematch.recommender.split import random_split, temporal_split


def ratings_frame(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-01-01T00:00:00", "s")
    return pd.DataFrame(
        {
            "user_id": rng.integers(1, 50, n),
            "movie_id": rng.integers(1, 200, n),
            "rating": rng.integers(1, 11, n) / 2,
            # shuffled times (with repeats) so that row order is not time order
            "rated_at": start + rng.integers(0, 10_000, n).astype("timedelta64[s]"),
        }
    )


@pytest.mark.parametrize("kind", ["pandas", "arrow"])
def test_random_split_is_80_20_disjoint_and_same_type(kind: str) -> None:
    df = ratings_frame()
    data = df if kind == "pandas" else pa.Table.from_pandas(df, preserve_index=False)
    train, test = random_split(data)
    assert type(train) is type(data) and type(test) is type(data)
    assert len(train) == 800 and len(test) == 200
    as_frame = (lambda t: t) if kind == "pandas" else (lambda t: t.to_pandas())
    both = pd.concat([as_frame(train), as_frame(test)]).sort_values(list(df.columns), ignore_index=True)
    assert both.equals(df.sort_values(list(df.columns), ignore_index=True))
    if kind == "pandas":  # the original index survives and partitions the rows
        assert sorted(train.index.tolist() + test.index.tolist()) == list(range(1000))


def test_random_split_is_seeded() -> None:
    df = ratings_frame()
    a_train, a_test = random_split(df, seed=7)
    b_train, b_test = random_split(df, seed=7)
    _, c_test = random_split(df, seed=8)
    assert a_test.index.equals(b_test.index) and a_train.index.equals(b_train.index)
    assert not a_test.index.equals(c_test.index)


def test_random_split_fraction() -> None:
    train, test = random_split(ratings_frame(), test_fraction=0.1, seed=1)
    assert (len(train), len(test)) == (900, 100)


@pytest.mark.parametrize("kind", ["pandas", "arrow"])
def test_temporal_split_puts_latest_ratings_in_test(kind: str) -> None:
    df = ratings_frame()
    data = df if kind == "pandas" else pa.Table.from_pandas(df, preserve_index=False)
    train, test = temporal_split(data)
    assert type(train) is type(data)
    train_times = np.asarray(train["rated_at"] if kind == "pandas" else train.column("rated_at").to_numpy())
    test_times = np.asarray(test["rated_at"] if kind == "pandas" else test.column("rated_at").to_numpy())
    assert len(train_times) == 800 and len(test_times) == 200
    assert train_times.max() <= test_times.min()
    # the test set is exactly the 200 latest ratings (as a multiset of timestamps)
    assert np.array_equal(np.sort(test_times), np.sort(df["rated_at"].to_numpy())[-200:])


def test_temporal_split_with_integer_timestamps_and_ties() -> None:
    df = pd.DataFrame({"user_id": [1] * 10, "movie_id": range(10), "rating": [3.0] * 10,
                       "rated_at": [5, 1, 5, 2, 5, 3, 5, 4, 0, 5]})  # fmt: skip
    train, test = temporal_split(df, test_fraction=0.3)
    assert len(test) == 3 and set(test["rated_at"]) == {5}
    assert train["rated_at"].max() <= test["rated_at"].min()
    # ties at the cut-off are split by row order: the last rows go to test
    assert test.index.tolist() == [4, 6, 9]


def test_split_rejects_bad_input() -> None:
    df = ratings_frame(20)
    with pytest.raises(BadInput):
        random_split(df, test_fraction=1.5)
    with pytest.raises(BadInput):
        temporal_split(df.drop(columns=["rated_at"]))
    with pytest.raises(BadInput):
        random_split({"user_id": [1]})  # type: ignore[arg-type]
    with_null = df.astype({"rated_at": "object"})
    with_null.loc[3, "rated_at"] = None
    with pytest.raises(BadInput):
        temporal_split(with_null)
    table = pa.table({"user_id": [1, 2], "movie_id": [1, 2], "rating": [1.0, 2.0], "rated_at": [1, None]})
    with pytest.raises(BadInput):
        temporal_split(table)
