"""Ratings stamped with fractions of a second (Parquet exports in ms/us/ns) train like whole-second ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import make_ratings

from cinematch.core.settings import Settings
from cinematch.ingest.bronze import ingest_file
from cinematch.lakehouse.etl import run_etl
from cinematch.recommender.interactions import epoch_seconds
from cinematch.recommender.training import params_from_settings, train_warehouse
from cinematch.storage.warehouse import write_session


@pytest.mark.parametrize("unit", ["ms", "us", "ns"])
def test_epoch_seconds_floors_sub_second_times(unit: str) -> None:
    per = {"ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[unit]
    ticks = np.array([0, per - 1, per, 5 * per + per // 2, -1], np.int64)  # -1: just before the epoch
    table = pa.table({"rated_at": pa.array(ticks, pa.timestamp(unit))})
    assert epoch_seconds(table).tolist() == [0, 0, 1, 5, -1]


def test_training_on_microsecond_timestamps(home: Settings, rng: np.random.Generator, tmp_path: Path) -> None:
    table = make_ratings(rng, n=2_000, users=80, movies=120)
    fractions = rng.integers(1, 1_000_000, size=table.num_rows)
    stamped = table.set_column(3, "rated_at", pa.array(table["rated_at"].cast(pa.int64()).to_numpy() + fractions,
                                                       pa.timestamp("us")))  # fmt: skip
    pq.write_table(stamped, tmp_path / "batch_w1.parquet")
    settings = Settings(home=home.home, als_rank=8, als_iterations=3)
    with write_session(settings, "test") as con:
        ingest_file(con, tmp_path / "batch_w1.parquet")
        run_etl(con, settings, write_lake=False)
        run = train_warehouse(con, settings, params_from_settings(settings))
    assert run["n_train"] > 0 and run["ndcg_at_10"] is not None
