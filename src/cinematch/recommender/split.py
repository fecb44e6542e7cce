"""Seeded random and temporal train/test splits of rating tables (pyarrow Table or pandas DataFrame)."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cinematch.errors import BadInput

REQUIRED_COLUMNS = ("user_id", "movie_id", "rating")
TIME_COLUMN = "rated_at"

Ratings = TypeVar("Ratings", pa.Table, pd.DataFrame)


def _check(data: pa.Table | pd.DataFrame, test_fraction: float, columns: tuple[str, ...]) -> int:
    if not isinstance(data, pa.Table | pd.DataFrame):
        raise BadInput(f"expected a pyarrow Table or pandas DataFrame, got {type(data).__name__}")
    names = data.column_names if isinstance(data, pa.Table) else list(data.columns)
    missing = [c for c in columns if c not in names]
    if missing:
        raise BadInput(f"ratings table lacks column(s) {', '.join(missing)}")
    if not 0.0 < test_fraction < 1.0:
        raise BadInput(f"test_fraction must be in (0, 1), got {test_fraction}")
    return data.num_rows if isinstance(data, pa.Table) else len(data)


def _n_test(n_rows: int, test_fraction: float) -> int:
    return round(n_rows * test_fraction)


def _apply(data: Ratings, test_mask: np.ndarray) -> tuple[Ratings, Ratings]:
    """Split rows by a boolean mask, keeping the original row order (and pandas index) in both parts."""
    if isinstance(data, pa.Table):
        mask = pa.array(test_mask)
        return data.filter(pc.invert(mask)), data.filter(mask)
    return data[~test_mask], data[test_mask]


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
