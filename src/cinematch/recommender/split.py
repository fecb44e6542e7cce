"""Train/test splits of rating tables (pyarrow Table or pandas DataFrame): random, temporal and per-user."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cinematch.core.errors import BadInput

REQUIRED_COLUMNS = ("user_id", "movie_id", "rating")
TIME_COLUMN = "rated_at"

Ratings = TypeVar("Ratings", pa.Table, pd.DataFrame)


class Split(NamedTuple, Generic[Ratings]):
    """A (train, test, info) triple; ``info`` is JSON-ready: the protocol's name, parameters and sizes."""

    train: Ratings
    test: Ratings
    info: dict[str, Any]


def _rows(data: pa.Table | pd.DataFrame, columns: tuple[str, ...]) -> int:
    if not isinstance(data, pa.Table | pd.DataFrame):
        raise BadInput(f"expected a pyarrow Table or pandas DataFrame, got {type(data).__name__}")
    names = data.column_names if isinstance(data, pa.Table) else list(data.columns)
    missing = [c for c in columns if c not in names]
    if missing:
        raise BadInput(f"ratings table lacks column(s) {', '.join(missing)}")
    return data.num_rows if isinstance(data, pa.Table) else len(data)


def _check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
        raise BadInput(f"{name} must be in (0, 1), got {value}")


def _check(data: pa.Table | pd.DataFrame, test_fraction: float, columns: tuple[str, ...]) -> int:
    n_rows = _rows(data, columns)
    _check_fraction("test_fraction", test_fraction)
    return n_rows


def _n_test(n_rows: int, test_fraction: float) -> int:
    return round(n_rows * test_fraction)


def _apply(data: Ratings, test_mask: np.ndarray) -> tuple[Ratings, Ratings]:
    """Split rows by a boolean mask, keeping the original row order (and pandas index) in both parts."""
    if isinstance(data, pa.Table):
        mask = pa.array(test_mask)
        return data.filter(pc.invert(mask)), data.filter(mask)
    return data[~test_mask], data[test_mask]


def _ids(data: pa.Table | pd.DataFrame, name: str) -> np.ndarray:
    column = data.column(name) if isinstance(data, pa.Table) else pa.Array.from_pandas(data[name])
    if column.null_count:
        raise BadInput(f"{name} has {column.null_count} null value(s); cannot split")
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise BadInput(f"{name} must hold integer ids, got {column.type}")
    try:  # a safe cast refuses 1.5 instead of truncating it
        ids: np.ndarray = column.cast(pa.int64()).to_numpy()
        return ids
    except pa.ArrowInvalid:
        raise BadInput(f"{name} must hold integer ids; found a fractional value") from None


def _times(data: pa.Table | pd.DataFrame) -> tuple[np.ndarray, pa.Array | pa.ChunkedArray]:
    """``rated_at`` as sortable numbers (timestamps as integer ticks), and the column itself."""
    column = data.column(TIME_COLUMN) if isinstance(data, pa.Table) else pa.Array.from_pandas(data[TIME_COLUMN])
    if column.null_count:
        raise BadInput(f"{TIME_COLUMN} has {column.null_count} null value(s); cannot split by time")
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date64(kind) or pa.types.is_duration(kind):
        values = column.cast(pa.int64()).to_numpy()
    elif pa.types.is_date32(kind):
        values = column.cast(pa.int32()).to_numpy()
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
        values = column.to_numpy()
    else:
        raise BadInput(f"{TIME_COLUMN} must be a timestamp, date or number, got {kind}")
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise BadInput(f"{TIME_COLUMN} has {int(np.isnan(values).sum())} NaN value(s); cannot split by time")
    return values, column


def random_split(data: Ratings, test_fraction: float = 0.2, seed: int = 42) -> tuple[Ratings, Ratings]:
    """Uniformly random (train, test): exactly round(n · test_fraction) rows go to test.

    Seeded with ``np.random.default_rng(seed)``; the same input and seed always give the same split.
    """
    n_rows = _check(data, test_fraction, REQUIRED_COLUMNS)
    rng = np.random.default_rng(seed)
    test_mask = np.zeros(n_rows, dtype=bool)
    test_mask[rng.permutation(n_rows)[: _n_test(n_rows, test_fraction)]] = True
    return _apply(data, test_mask)


def temporal_split(data: Ratings, test_fraction: float = 0.2) -> tuple[Ratings, Ratings]:
    """(train, test) where test holds the latest round(n · test_fraction) ratings by ``rated_at``, globally.

    Rows are ranked by a stable sort on ``rated_at``; ratings sharing the cut-off timestamp are split by
    their row order, so the sizes are exact and every train timestamp is <= every test timestamp.
    """
    n_rows = _check(data, test_fraction, (*REQUIRED_COLUMNS, TIME_COLUMN))
    if isinstance(data, pa.Table):
        column = data.column(TIME_COLUMN)
        if column.null_count:
            raise BadInput(f"{TIME_COLUMN} has {column.null_count} null value(s); cannot split by time")
        order = pc.sort_indices(data.select([TIME_COLUMN]), sort_keys=[(TIME_COLUMN, "ascending")])
        order = order.to_numpy()  # Arrow's sort_indices is stable
    else:
        column = data[TIME_COLUMN]
        nulls = int(column.isna().sum())
        if nulls:
            raise BadInput(f"{TIME_COLUMN} has {nulls} null value(s); cannot split by time")
        # Series.argsort handles tz-aware datetimes without an object-array detour.
        order = column.reset_index(drop=True).argsort(kind="stable").to_numpy()
    test_mask = np.zeros(n_rows, dtype=bool)
    test_mask[order[n_rows - _n_test(n_rows, test_fraction) :]] = True
    return _apply(data, test_mask)


def _dense(values: np.ndarray) -> np.ndarray:
    """0-based uint64 codes in the order of ``values``; equal values share a code (one sort)."""
    order = np.argsort(values)
    ordered = values[order]
    new = np.empty(len(values), dtype=bool)
    new[:1] = True
    new[1:] = ordered[1:] != ordered[:-1]
    codes = np.empty(len(values), dtype=np.uint64)
    codes[order] = np.cumsum(new, dtype=np.uint64) - np.uint64(1)
    return codes


def _rank_within_user(users: np.ndarray, within: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rank, count) per row: its 1-based position among its user's rows ordered by ``within``, and their number.

    User codes and the leading bits of ``within`` (uint64) are packed into one key, so a single argsort orders
    the rows; np.lexsort on the same keys is several times slower at 25M rows.
    """
    codes = _dense(users)
    n_users = int(codes.max()) + 1 if len(codes) else 0
    shift = np.uint64(max(1, n_users - 1).bit_length())
    order = np.argsort((codes << (np.uint64(64) - shift)) | (within >> shift))
    counts = np.bincount(codes, minlength=n_users)
    rank = np.empty(len(codes), dtype=np.int64)
    rank[order] = np.arange(len(codes)) - (np.cumsum(counts) - counts)[codes[order]] + 1
    return rank, counts[codes]


def seeded_user_keys(users: np.ndarray, seed: int) -> np.ndarray:
    """A uniform pseudo-random uint64 per (user, seed): a user keeps its key whatever else is in the data."""
    users = np.asarray(users, dtype=np.int64)
    return _seeded_keys(users, np.zeros_like(users), seed)


def _seeded_keys(users: np.ndarray, movies: np.ndarray, seed: int) -> np.ndarray:
    """A uniform pseudo-random uint64 per (user, movie, seed): splitmix64 of the mixed ids."""
    with np.errstate(over="ignore"):
        h = users.view(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ movies.view(np.uint64)
        h = h + np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * np.uint64(0xD1B54A32D192ED03)
        for _ in range(2):  # two splitmix64 finalisers, so nearby ids land far apart
            h ^= h >> np.uint64(30)
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(27)
            h *= np.uint64(0x94D049BB133111EB)
            h ^= h >> np.uint64(31)
    return h


def random_per_user_split(data: Ratings, test_fraction: float = 0.25, seed: int = 42) -> Split[Ratings]:
    """Per-user stratified random split, the rule of Microsoft Recommenders' ``python_stratified_split``.

    Each user's ratings are put in a seeded random order and the first ``np.round((1 - test_fraction) · n_u)``
    go to train, the rest to test. ``np.round`` rounds halves to even, like Python's ``round`` in the reference
    checker and pandas' ``Series.round`` in Recommenders: at the default 0.75, a user with 1 or 2 ratings keeps
    them all in train (0.75 -> 1, 1.5 -> 2) and a user with 6 gets 4 + 2 (4.5 -> 4).

    The random order comes from a seeded hash of (user_id, movie_id) rather than from a generator drawn in row
    order (Recommenders' ``np.random.rand``), so the same ratings give the same split whatever order they are
    read in (DuckDB, Parquet, CSV); the per-user sizes equal Recommenders', the rows drawn differ. Only ``seed``
    matters: no global random state and no environment variable is read.
    """
    n_rows = _check(data, test_fraction, REQUIRED_COLUMNS)
    users, movies = _ids(data, "user_id"), _ids(data, "movie_id")
    rank, count = _rank_within_user(users, _seeded_keys(users, movies, seed))
    test_mask = rank > np.round((1.0 - test_fraction) * count)
    train, test = _apply(data, test_mask)
    n_test = int(np.count_nonzero(test_mask))
    info = {"protocol": "random_per_user", "test_fraction": test_fraction, "seed": seed,
            "rounding": "half-to-even", "n_train": n_rows - n_test, "n_test": n_test}  # fmt: skip
    return Split(train, test, info)


def _json_time(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date | dt.datetime) else value


def temporal_cut_split(data: Ratings, quantile: float = 0.8) -> Split[Ratings]:
    """One global cut at the ``quantile`` of ``rated_at``: train strictly before the cut, test at or after it.

    The cut is an observed timestamp: the value at 0-based position min(floor(quantile · n), n - 1) of the
    sorted times, so with distinct times exactly floor(quantile · n) ratings are in train; ratings sharing the
    cut timestamp all go to test. ``info["cut_at"]`` holds the cut (ISO-8601 text for dates and timestamps).
    """
    n_rows = _rows(data, (*REQUIRED_COLUMNS, TIME_COLUMN))
    _check_fraction("quantile", quantile)
    if n_rows == 0:
        raise BadInput("cannot split zero ratings by time")
    times, column = _times(data)
    position = min(math.floor(quantile * n_rows), n_rows - 1)
    cut_row = int(np.argpartition(times, position)[position])
    test_mask = times >= times[cut_row]
    n_test = int(np.count_nonzero(test_mask))
    if n_test == n_rows:
        raise BadInput(f"no rating is older than the {quantile} quantile of {TIME_COLUMN}; cannot cut by time")
    train, test = _apply(data, test_mask)
    info = {"protocol": "temporal", "quantile": quantile, "cut_at": _json_time(column[cut_row].as_py()),
            "n_train": n_rows - n_test, "n_test": n_test}  # fmt: skip
    return Split(train, test, info)


def leave_last_n_split(data: Ratings, n: int = 1) -> Split[Ratings]:
    """Per user with more than ``n`` ratings, the ``n`` latest go to test; everything else is train.

    "Latest" orders a user's ratings by (``rated_at``, ``movie_id``): among ratings with the same timestamp the
    larger movie id counts as later, so the split never depends on row order.
    """
    n_rows = _rows(data, (*REQUIRED_COLUMNS, TIME_COLUMN))
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise BadInput(f"n must be an integer >= 1, got {n!r}")
    users, movies = _ids(data, "user_id"), _ids(data, "movie_id")
    times, _ = _times(data)
    # the dense rank of (time, movie) fits in the low bits of _rank_within_user's packed key
    later = _dense((_dense(times) << np.uint64(32)) | _dense(movies)) << np.uint64(32)
    rank, count = _rank_within_user(users, later)
    test_mask = (count > n) & (rank > count - n)
    train, test = _apply(data, test_mask)
    n_test = int(np.count_nonzero(test_mask))
    return Split(train, test, {"protocol": "leave_last_n", "n": int(n), "n_train": n_rows - n_test, "n_test": n_test})
