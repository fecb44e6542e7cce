"""Drift checks on the warehouse: stored reports, reference stats once per version, the retraining cycle."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from cinematch.core.errors import BadInput
from cinematch.core.settings import Settings
from cinematch.datasets.generate import generate_tables
from cinematch.datasets.generate_config import GenerateConfig
from cinematch.drift.check import check_drift, drift_files
from cinematch.ingest.bronze import ingest_file
from cinematch.lakehouse.etl import run_etl
from cinematch.pipelines.retrain import drift_and_retrain
from cinematch.recommender import registry
from cinematch.recommender.training import params_from_settings, train_warehouse
from cinematch.recommender.training_set import training_batches
from cinematch.storage.warehouse import write_session

CONFIG = GenerateConfig(users=600, movies=400, ratings=30000, weeks=3, batch_ratings=3000, drift_week=2, seed=5)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("drift-data")
    paths = {}
    for name, table in generate_tables(CONFIG).items():
        if name in ("ratings", "batch_w1", "batch_w2", "batch_w3"):
            paths[name] = folder / f"{name}.parquet"
            pq.write_table(table, paths[name])
    return paths


@pytest.fixture
def trained(home: Settings, data):
    settings = home.model_copy(update={"als_rank": 8, "als_iterations": 6})
    with write_session(settings) as con:
        ingest_file(con, data["ratings"], batch_id="base")
        run_etl(con, settings, write_lake=False)
        train_warehouse(con, settings, params_from_settings(settings))
        yield settings, con


def test_no_champion_is_a_clear_error(home: Settings, data) -> None:
    with write_session(home) as con:
        ingest_file(con, data["ratings"], batch_id="base")
        run_etl(con, home, write_lake=False)
        with pytest.raises(BadInput, match="no champion model yet"):
            check_drift(con, home)


def test_same_distribution_batch_is_quiet(trained, data) -> None:
    settings, con = trained
    ingest_file(con, data["batch_w1"])  # before the drift week
    run_etl(con, settings, write_lake=False)
    doc = check_drift(con, settings)
    assert doc["decision"] == "no_drift", doc["reasons"]
    assert doc["batch_ids"] == ["batch_w1"] and doc["n_current"] == 3000
    row = con.execute("select decision, n_current, batch_ids from ops.drift_reports").fetchall()
    assert row == [("no_drift", 3000, '["batch_w1"]')]


def test_drifted_batch_triggers_retrain_and_merges_once(trained, data) -> None:
    settings, con = trained
    ingest_file(con, data["batch_w3"])  # full-strength drift
    run_etl(con, settings, write_lake=False)
    first_champion = registry.champion(con)["version"]
    cycle = drift_and_retrain(con, settings)
    assert cycle["drift"]["decision"] == "retrain" and cycle["retrained"]
    assert cycle["drift"]["mean_shift"] < -0.3 and cycle["drift"]["new_user_share"] > 0
    assert cycle["training"]["merged_batches"] == ["batch_w3"]
    assert cycle["training"]["promoted"] and cycle["champion_version"] != first_champion
    assert training_batches(con) == ["base", "batch_w3"]
    again = drift_and_retrain(con, settings)  # nothing new is buffered: no second merge, no retrain
    assert again["drift"]["decision"] == "insufficient_data" and not again["retrained"]
    assert again["drift"]["n_current"] == 0
    # merged batches stay queryable in silver with their batch id
    assert con.execute("select count(*) from silver.ratings where batch_id = 'batch_w3'").fetchall()[0][0] == 3000


def test_reference_stats_are_computed_once_per_version(trained, data) -> None:
    settings, con = trained
    ingest_file(con, data["batch_w1"])
    run_etl(con, settings, write_lake=False)
    check_drift(con, settings)
    champion = registry.champion(con)["version"]
    ref = registry.model_dir(settings, champion) / "reference" / "reference.json"
    stamp = ref.stat().st_mtime_ns
    check_drift(con, settings)
    assert ref.stat().st_mtime_ns == stamp


def test_small_buffer_is_insufficient_data(trained, data, tmp_path: Path) -> None:
    settings, con = trained
    small = tmp_path / "small.parquet"
    pq.write_table(pq.read_table(data["batch_w3"]).slice(0, 200), small)
    ingest_file(con, small)
    run_etl(con, settings, write_lake=False)
    doc = check_drift(con, settings)
    assert doc["decision"] == "insufficient_data" and not doc["should_retrain"]


def test_drift_on_files(home: Settings, data) -> None:
    quiet = drift_files(home, data["ratings"], data["batch_w1"])
    loud = drift_files(home, data["ratings"], data["batch_w3"])
    assert quiet["decision"] in ("no_drift", "warning") and loud["decision"] == "retrain"
    assert loud["score"] > 1.0 > quiet["score"]
    ratings = pq.read_table(data["ratings"]).column("rating")
    assert abs(quiet["mean_shift"]) < 0.1 and pc.mean(ratings).as_py() > 3.0


def test_the_stored_reference_equals_the_snapshot_of_the_champions_rows(trained, data) -> None:
    """Counted by the warehouse (GROUP BY), the reference is the one of the training rows read one by one."""
    from cinematch.drift.check import _movie_genres, champion_reference
    from cinematch.drift.stats import reference_stats
    from cinematch.recommender.training_set import ratings_of

    settings, con = trained
    champion = registry.champion(con)
    rows = ratings_of(con, champion["batch_ids"])
    expected = reference_stats(rows.column("rating").to_numpy(), rows.column("user_id").to_numpy(),
                               rows.column("movie_id").to_numpy(), movie_genres=_movie_genres(con))  # fmt: skip
    assert champion_reference(con, settings, champion) == expected
    assert expected.n == rows.num_rows  # (genres: this warehouse has no movies file; test_stats covers them)
