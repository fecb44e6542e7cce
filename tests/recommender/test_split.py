"""Random, temporal and per-user splits: sizes, stratification, seeding, time ordering, input types."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cinematch.core.errors import BadInput
from cinematch.recommender.split import (
    Split,
    leave_last_n_split,
    random_per_user_split,
    random_split,
    temporal_cut_split,
    temporal_split,
)


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


def _as_frame(table: pa.Table | pd.DataFrame) -> pd.DataFrame:
    return table.to_pandas() if isinstance(table, pa.Table) else table


def _pairs(table: pa.Table | pd.DataFrame) -> set[tuple[int, int]]:
    frame = _as_frame(table)
    return set(zip(frame["user_id"].tolist(), frame["movie_id"].tolist(), strict=True))


def per_user_frame() -> pd.DataFrame:
    """Users 1..6 with 1, 2, 4, 6, 10 and 40 ratings of distinct movies, times 0..62 in row order."""
    sizes = [1, 2, 4, 6, 10, 40]
    users = np.repeat(np.arange(1, 7), sizes)
    movies = np.concatenate([np.arange(100, 100 + n) for n in sizes])
    return pd.DataFrame({"user_id": users, "movie_id": movies, "rating": 4.0, "rated_at": np.arange(len(users))})


@pytest.mark.parametrize("kind", ["pandas", "arrow"])
def test_random_per_user_split_sizes_follow_the_rounding_rule(kind: str) -> None:
    df = per_user_frame()
    data = df if kind == "pandas" else pa.Table.from_pandas(df, preserve_index=False)
    split = random_per_user_split(data)
    assert isinstance(split, Split) and type(split.train) is type(data)
    train, test = _as_frame(split.train), _as_frame(split.test)
    # train per user = round-half-to-even(0.75 n): 0.75 -> 1, 1.5 -> 2, 3 -> 3, 4.5 -> 4, 7.5 -> 8, 30 -> 30
    assert train.groupby("user_id").size().to_dict() == {1: 1, 2: 2, 3: 3, 4: 4, 5: 8, 6: 30}
    assert test.groupby("user_id").size().to_dict() == {3: 1, 4: 2, 5: 2, 6: 10}
    assert not _pairs(train) & _pairs(test) and _pairs(train) | _pairs(test) == _pairs(df)
    assert split.info == {"protocol": "random_per_user", "test_fraction": 0.25, "seed": 42,
                          "rounding": "half-to-even", "n_train": 48, "n_test": 15}  # fmt: skip


def test_random_per_user_split_is_seeded_and_independent_of_row_order() -> None:
    df = per_user_frame()
    first = random_per_user_split(df, seed=7)
    again = random_per_user_split(df, seed=7)
    assert first.test.index.equals(again.test.index)
    # the same ratings in another row order and as Arrow: the same (user, movie) pairs go to test
    shuffled = df.sample(frac=1.0, random_state=3)
    assert _pairs(random_per_user_split(shuffled, seed=7).test) == _pairs(first.test)
    table = pa.Table.from_pandas(shuffled, preserve_index=False)
    assert _pairs(random_per_user_split(table, seed=7).test) == _pairs(first.test)
    # another seed picks other movies of user 6 (10 of 40: the chance of the same pick is 1 / C(40, 10))
    assert _pairs(random_per_user_split(df, seed=8).test) != _pairs(first.test)


def test_random_per_user_split_is_random_within_a_user() -> None:
    # across seeds, user 6's test movies are spread over its 40 movies, not always the first or last rows
    df = per_user_frame()
    picked = np.concatenate(
        [random_per_user_split(df, seed=s).test.query("user_id == 6")["movie_id"] for s in range(30)]
    )
    frequency = np.bincount(picked - 100, minlength=40) / 30
    assert len(picked) == 300 and frequency.min() > 0.0 and frequency.max() < 0.65  # expected 0.25 each


def test_random_per_user_split_fraction_and_bad_input() -> None:
    split = random_per_user_split(per_user_frame(), test_fraction=0.5)
    # train = round-half-to-even(0.5 n) for n = 1, 2, 4, 6, 10, 40: 0, 1, 2, 3, 5, 20 (user 1's one rating is test)
    assert _as_frame(split.train).groupby("user_id").size().to_dict() == {2: 1, 3: 2, 4: 3, 5: 5, 6: 20}
    with pytest.raises(BadInput):
        random_per_user_split(per_user_frame(), test_fraction=0.0)
    with pytest.raises(BadInput):
        random_per_user_split(per_user_frame().drop(columns=["movie_id"]))
    with pytest.raises(BadInput):
        random_per_user_split(per_user_frame().astype({"user_id": float}).assign(user_id=1.5))


@pytest.mark.parametrize("kind", ["pandas", "arrow"])
def test_temporal_cut_split_cuts_at_the_quantile(kind: str) -> None:
    df = ratings_frame()  # 1000 ratings, shuffled times with repeats
    data = df if kind == "pandas" else pa.Table.from_pandas(df, preserve_index=False)
    train, test, info = temporal_cut_split(data)
    train_times, test_times = _as_frame(train)["rated_at"], _as_frame(test)["rated_at"]
    cut = np.sort(df["rated_at"].to_numpy())[800]  # position floor(0.8 * 1000)
    assert train_times.max() < cut <= test_times.min()  # strictly before / at or after the cut
    assert len(train) == int((df["rated_at"] < cut).sum()) and len(train) + len(test) == 1000
    assert info == {"protocol": "temporal", "quantile": 0.8, "cut_at": pd.Timestamp(cut).isoformat(),
                    "n_train": len(train), "n_test": len(test)}  # fmt: skip


def test_temporal_cut_split_ties_go_to_test() -> None:
    df = pd.DataFrame({"user_id": [1] * 10, "movie_id": range(10), "rating": 3.0,
                       "rated_at": [5, 1, 5, 2, 9, 3, 5, 4, 0, 8]})  # fmt: skip
    # sorted times 0 1 2 3 4 5 5 5 8 9; quantile 0.6 -> position 6 -> cut 5: all three 5s go to test
    train, test, info = temporal_cut_split(df, quantile=0.6)
    assert sorted(train["rated_at"]) == [0, 1, 2, 3, 4] and sorted(test["rated_at"]) == [5, 5, 5, 8, 9]
    assert info["cut_at"] == 5
    with pytest.raises(BadInput):  # nothing is older than the cut: no train set
        temporal_cut_split(df.assign(rated_at=7))
    with pytest.raises(BadInput):
        temporal_cut_split(df, quantile=1.0)
    with pytest.raises(BadInput):
        temporal_cut_split(df.assign(rated_at="2024-01-01"))


def test_temporal_cut_split_with_time_zones() -> None:
    times = pd.to_datetime(["2024-01-01T10:00", "2024-01-02T10:00", "2024-01-03T10:00", "2024-01-04T10:00"])
    df = pd.DataFrame({"user_id": 1, "movie_id": [1, 2, 3, 4], "rating": 4.0, "rated_at": times.tz_localize("UTC")})
    for data in (df, pa.Table.from_pandas(df, preserve_index=False)):
        train, test, info = temporal_cut_split(data, quantile=0.5)  # position 2 -> the third timestamp
        assert len(train) == 2 and len(test) == 2
        assert info["cut_at"] == "2024-01-03T10:00:00+00:00"


@pytest.mark.parametrize("kind", ["pandas", "arrow"])
def test_leave_last_n_split_picks_the_latest(kind: str) -> None:
    df = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 3, 1, 2],
            "movie_id": [10, 11, 12, 20, 21, 30, 13, 22],
            "rating": 4.0,
            # user 1: movies 10..13 at times 3, 9, 1, 9 -> latest is the tie at 9, broken by the larger movie id (13)
            # user 2: movies 20, 21, 22 at times 5, 2, 7 -> latest 22, then 20
            # user 3: a single rating stays in train
            "rated_at": [3, 9, 1, 5, 2, 4, 9, 7],
        }
    )
    data = df if kind == "pandas" else pa.Table.from_pandas(df, preserve_index=False)
    train, test, info = leave_last_n_split(data)
    assert _pairs(test) == {(1, 13), (2, 22)}
    assert _pairs(train) == _pairs(df) - _pairs(test)
    assert info == {"protocol": "leave_last_n", "n": 1, "n_train": 6, "n_test": 2}
    _, test2, _ = leave_last_n_split(data, n=2)
    # user 2 has 3 > 2 ratings: 22 and 20 go; user 1: 13 and 11 (both at time 9); user 3 keeps its one
    assert _pairs(test2) == {(1, 13), (1, 11), (2, 22), (2, 20)}
    _, test3, _ = leave_last_n_split(data, n=3)
    assert _pairs(test3) == {(1, 13), (1, 11), (1, 10)}  # only user 1 has more than 3 ratings
    with pytest.raises(BadInput):
        leave_last_n_split(data, n=0)


def test_blocked_hash_equals_the_whole_array_formula_across_blocks_and_dtypes() -> None:
    """The split's hash, computed in blocks in place, against the formula written on whole arrays (the split every
    stored version was evaluated on): more ratings than one block, negative and int32 ids."""
    import pyarrow as pa

    from cinematch.recommender.training_set import stable_split

    rng = np.random.default_rng(11)
    n = 200_001
    users, movies = rng.integers(-50, 10**6, n), rng.integers(1, 10**5, n).astype(np.int32)
    ts = rng.integers(0, 2 * 10**15, n)
    table = pa.table({"user_id": users, "movie_id": movies, "rating": np.full(n, 3.0),
                      "rated_at": pa.array(ts, pa.timestamp("us"))})  # fmt: skip
    u, m, t = users.astype(np.uint64), movies.astype(np.uint64), ts.astype(np.uint64)
    with np.errstate(over="ignore"):
        h = u * np.uint64(0x9E3779B97F4A7C15) ^ m * np.uint64(0xC2B2AE3D27D4EB4F)
        h ^= t * np.uint64(0x165667B19E3779F9) ^ np.uint64(42) * np.uint64(0x27D4EB2F165667C5)
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    held = (h >> np.uint64(11)).astype(np.float64) / float(1 << 53) < 0.2
    train, test = stable_split(table)
    np.testing.assert_array_equal(test.column("user_id").to_numpy(), users[held])
    np.testing.assert_array_equal(train.column("movie_id").to_numpy(), movies[~held])
