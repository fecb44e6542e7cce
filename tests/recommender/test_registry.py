"""Registry and training runs: versions, never promoting a worse model, promote/rollback, batch top-N, predict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from tests.conftest import make_ratings

from cinematch.core.errors import BadInput, CineMatchError
from cinematch.core.settings import Settings
from cinematch.datasets.generate import generate_tables
from cinematch.datasets.generate_config import GenerateConfig
from cinematch.ingest.bronze import ingest_file
from cinematch.lakehouse.etl import run_etl
from cinematch.recommender import registry
from cinematch.recommender.recommendations import predict_pairs
from cinematch.recommender.training import params_from_settings, train_files, train_warehouse
from cinematch.recommender.training_set import merge_batches, stable_split, training_batches, unmerged_batches
from cinematch.storage.warehouse import write_session

SMALL = {"rank": 8, "iterations": 6}


@pytest.fixture
def warehouse(home: Settings, tmp_path: Path):
    # learnable (low-rank) ratings, so a good model and a bad one differ
    tables = generate_tables(GenerateConfig(users=250, movies=200, ratings=6000, weeks=1, batch_ratings=2500, seed=3))
    paths = [tmp_path / "batch_w1.parquet", tmp_path / "batch_w2.parquet"]
    pq.write_table(tables["ratings"], paths[0])
    pq.write_table(tables["batch_w1"], paths[1])
    with write_session(home) as con:
        ingest_file(con, paths[0])
        run_etl(con, home, write_lake=False)
        yield home, con, paths


def test_first_model_is_champion_with_files_and_row(warehouse) -> None:
    home, con, _ = warehouse
    doc = train_warehouse(con, home, params_from_settings(home, **SMALL))
    assert {"version", "rmse", "mae", "precision_at_10", "recall_at_10", "ndcg_at_10", "train_seconds"} <= set(doc)
    assert doc["promoted"] and doc["champion_version"] == doc["version"]
    folder = registry.model_dir(home, doc["version"])
    assert (folder / "metadata.json").is_file() and (folder / "user_factors.npy").is_file()
    meta = registry.load_metadata(home, doc["version"])
    assert meta["batch_ids"] == ["batch_w1"] and len(meta["data_checksum"]) == 32
    assert registry.champion_alias(home) == doc["version"]
    assert training_batches(con) == ["batch_w1"] and unmerged_batches(con) == []
    n_users = registry.load_model(home, doc["version"]).n_users  # users with training ratings
    recs = con.execute("select count(*), count(distinct user_id), min(model_version) from serving.recommendations")
    assert recs.fetchall()[0] == (n_users * home.top_n, n_users, doc["version"])
    seen = con.execute(
        """select count(*) from serving.recommendations r join silver.ratings s using (user_id, movie_id)"""
    ).fetchall()[0][0]
    assert seen == 0  # recommendations never repeat what the user rated


def test_a_worse_model_is_registered_but_not_promoted(warehouse) -> None:
    home, con, _ = warehouse
    good = train_warehouse(con, home, params_from_settings(home, **SMALL))
    bad = train_warehouse(con, home, params_from_settings(home, rank=1, iterations=1, reg=50.0))
    assert not bad["promoted"] and bad["promotion"]["decision"] == "rejected"
    assert bad["promotion"]["challenger_rmse"] > bad["promotion"]["champion_rmse"]
    assert registry.champion(con)["version"] == good["version"]
    row = registry.get_model(con, bad["version"])
    assert row["status"] == "rejected" and row["promotion"]["champion_version"] == good["version"]


def test_promote_and_rollback(warehouse) -> None:
    home, con, _ = warehouse
    first = train_warehouse(con, home, params_from_settings(home, **SMALL))
    second = train_warehouse(con, home, params_from_settings(home, rank=1, iterations=1, reg=50.0))
    registry.promote(con, home, second["version"])
    assert registry.champion(con)["version"] == second["version"]
    back = registry.rollback(con, home)
    assert back["champion"] == first["version"] and back["previous"] == second["version"]
    assert registry.champion_alias(home) == first["version"]


def test_rollback_skips_models_whose_files_are_gone(warehouse) -> None:
    import shutil

    home, con, _ = warehouse
    a = train_warehouse(con, home, params_from_settings(home, **SMALL))
    b = train_warehouse(con, home, params_from_settings(home, rank=1, iterations=1, reg=50.0))
    registry.promote(con, home, b["version"])
    shutil.rmtree(registry.model_dir(home, a["version"]))
    with pytest.raises(BadInput, match="no earlier champion"):
        registry.rollback(con, home)
    with pytest.raises(CineMatchError, match="missing"):
        registry.promote(con, home, a["version"])


@pytest.mark.parametrize("bad", ["../etc", "version_x", "version_20240101T000000_000000Z/../..", ""])
def test_versions_are_validated(bad: str) -> None:
    with pytest.raises(BadInput):
        registry.validate_version(bad)


def test_a_batch_is_never_merged_twice(warehouse) -> None:
    _, con, _ = warehouse
    assert merge_batches(con, ["batch_w1"], "v1") == ["batch_w1"]
    assert merge_batches(con, ["batch_w1", "batch_w1"], "v2") == []
    with pytest.raises(Exception, match="(?i)constraint|duplicate"):
        con.execute("insert into ops.training_batches values ('batch_w1', now()::timestamp, 'v3')")


def test_retrain_compares_on_the_new_batches(warehouse) -> None:
    home, con, paths = warehouse
    train_warehouse(con, home, params_from_settings(home, **SMALL))
    ingest_file(con, paths[1])
    run_etl(con, home, write_lake=False)
    doc = train_warehouse(con, home, params_from_settings(home, **SMALL))
    assert doc["merged_batches"] == ["batch_w2"]
    promotion = doc["promotion"]
    # both versions on every held-out row (the new batch's and the older ones, unseen by both)
    assert promotion["eval_data"].startswith("every held-out rating of the stable split")
    assert promotion["eval_rows"] == doc["n_test"]
    assert promotion["eval_users"] > 0 and promotion["champion_ndcg"] == promotion["champion_ndcg"]  # not NaN
    assert promotion["challenger_rmse"] < promotion["champion_rmse"]  # trained on the new batch: better on it
    # the decision follows the rule: bootstrap lower bound of the NDCG difference and RMSE, both within tolerance
    ndcg_ok = promotion["ndcg_diff_low"] >= -home.promotion_ndcg_tolerance
    assert doc["promoted"] == ndcg_ok, promotion["reason"]
    assert promotion["ndcg_diff_low"] <= promotion["ndcg_diff"] <= promotion["ndcg_diff_high"]


def test_stable_split_keeps_each_rating_on_its_side(rng) -> None:
    table = make_ratings(rng, n=4000)
    _, test = stable_split(table)
    assert abs(test.num_rows / 4000 - 0.2) < 0.03
    bigger = make_ratings(np.random.default_rng(99), n=1000)
    import pyarrow as pa

    _, test_all = stable_split(pa.concat_tables([table, bigger]))
    keys = {tuple(r.values()) for r in test.to_pylist()}
    keys_all = {tuple(r.values()) for r in test_all.to_pylist()}
    assert keys <= keys_all  # growing the data never moves a test rating into train


def test_predict_pairs_flags_unknown_ids(warehouse, tmp_path: Path) -> None:
    home, con, _ = warehouse
    train_warehouse(con, home, params_from_settings(home, **SMALL))
    user, movie = con.execute("select user_id, movie_id from silver.ratings limit 1").fetchall()[0]
    pairs = tmp_path / "future.txt"
    pairs.write_text(f"user,movie,date\n{user},{movie},2024-05-01\n999999,{movie},2024-05-01\n")
    out = tmp_path / "pred.csv"
    doc = predict_pairs(home, pairs, out)
    assert doc["pairs"] == 2 and doc["fallbacks"] == 1
    lines = out.read_text().splitlines()
    assert lines[0] == "user_id,movie_id,date,predicted_rating,fallback"
    assert lines[1].endswith(",false") and lines[2].endswith(",true")
    assert 0.5 <= float(lines[1].split(",")[3]) <= 5.0


U_DATA_ROWS = 3000


@pytest.mark.parametrize("fmt", ["parquet", "u.data", "ratings.csv", "ratings.dat"])
def test_train_files_in_each_format(home: Settings, tmp_path: Path, rng, fmt: str) -> None:
    table = make_ratings(rng, n=U_DATA_ROWS, users=100, movies=120)
    train_t, test_t = stable_split(table)

    def write(t, stem: str) -> Path:
        rows = zip(*(t.column(c).to_pylist() for c in ("user_id", "movie_id", "rating")), strict=True)
        ts = [int(x.timestamp()) for x in t.column("rated_at").to_pylist()]
        if fmt == "parquet":
            path = tmp_path / f"{stem}.parquet"
            pq.write_table(t, path)
        elif fmt == "u.data":
            path = tmp_path / f"{stem}.data"
            path.write_text(
                "".join(
                    f"{u}\t{m}\t{int(r) if r == int(r) else r}\t{s}\n" for (u, m, r), s in zip(rows, ts, strict=True)
                )
            )
        elif fmt == "ratings.csv":
            path = tmp_path / f"{stem}.csv"
            path.write_text(
                "userId,movieId,rating,timestamp\n"
                + "".join(f"{u},{m},{r},{s}\n" for (u, m, r), s in zip(rows, ts, strict=True))
            )
        else:
            path = tmp_path / f"{stem}.dat"
            path.write_text("".join(f"{u}::{m}::{r}::{s}\n" for (u, m, r), s in zip(rows, ts, strict=True)))
        return path

    doc = train_files(home, write(train_t, "train"), write(test_t, "test"), params_from_settings(home, **SMALL))
    assert doc["n_test"] == test_t.num_rows and 0.5 < doc["rmse"] < 2.0
    assert not home.duckdb_path.exists()  # the warehouse is not touched


def test_the_ranking_search_runs_first_then_is_reused_until_asked(warehouse) -> None:
    """The first version searches on validation data and records every candidate; a retrain reuses the
    champion's choice without searching; `train --tune` (tune=True) searches again."""
    home, con, paths = warehouse
    first = registry.load_metadata(home, train_warehouse(con, home, params_from_settings(home, **SMALL))["version"])
    ranking = first["ranking"]
    assert ranking["tuned"] and len(ranking["candidates"]) >= 20
    assert {c["model"] for c in ranking["candidates"]} >= {"ease", "session_ease", "ials"}
    assert all(0 <= c["ndcg_at_10"] <= 1 for c in ranking["candidates"])
    ingest_file(con, paths[1])
    run_etl(con, home, write_lake=False)
    again = registry.load_metadata(home, train_warehouse(con, home, params_from_settings(home, **SMALL))["version"])
    assert not again["ranking"]["tuned"] and again["ranking"]["candidates"] == []
    assert again["ranking"]["choice"]["weights"] == ranking["choice"]["weights"]
    tuned = train_warehouse(con, home, params_from_settings(home, **SMALL), tune=True)
    assert registry.load_metadata(home, tuned["version"])["ranking"]["tuned"]


def test_a_ranking_model_is_read_once_until_another_is_loaded_or_its_files_change(home: Settings) -> None:
    from tests.recommender.test_ranking_models import block_ratings

    from cinematch.recommender.als import ALSModel
    from cinematch.recommender.ease import EASE, EASEParams
    from cinematch.recommender.interactions import histories
    from cinematch.recommender.ranker import Component, Ranker

    table = block_ratings()
    hist = histories(table)
    als = ALSModel.fit(table["user_id"].to_numpy(), table["movie_id"].to_numpy(), table["rating"].to_numpy(),
                       params_from_settings(home, rank=2, iterations=1))  # fmt: skip
    versions = []
    for l2 in (2.0, 5.0):
        ranker = Ranker([Component("ease", EASE.fit(hist.binary, hist.item_ids, EASEParams(l2=l2)).compact())])
        versions.append(registry.new_version())
        registry.save_version(home, als, {}, versions[-1], ranker)
    first = registry.load_ranker(home, versions[0])
    assert registry.load_ranker(home, versions[0]) is first  # the matrices are not read again
    second = registry.load_ranker(home, versions[1])
    assert second is not first and second.components[0].model.params.l2 == 5.0
    again = registry.load_ranker(home, versions[0])
    assert again is not first and again.components[0].model.params.l2 == 2.0  # one entry: read again
    meta = registry.model_dir(home, versions[0]) / registry.RANKING_DIR / "ranker.json"
    meta.write_text(meta.read_text())  # the files changed (a new mtime): read again
    assert registry.load_ranker(home, versions[0]) is not again


def test_a_trained_ranking_model_is_remembered_and_scores_as_the_stored_one(warehouse, monkeypatch) -> None:
    """After training, the version's ranker is the one in memory (no read back), and it gives the same scores
    as the files it was saved to."""
    from cinematch.recommender.interactions import histories
    from cinematch.recommender.ranker import Ranker

    home, con, _ = warehouse
    version = train_warehouse(con, home, params_from_settings(home, **SMALL))["version"]
    path = registry.model_dir(home, version) / registry.RANKING_DIR
    stored = Ranker.load(path)

    def no_read(directory: Path) -> Ranker:
        raise AssertionError(f"read back {directory}")

    monkeypatch.setattr(Ranker, "load", no_read)
    remembered = registry.load_ranker(home, version)
    assert remembered is not None
    ratings = con.sql("select user_id, movie_id, rating, rated_at from silver.ratings").to_arrow_table()
    hist = histories(ratings, stored.item_ids)
    rows = hist.rows(hist.user_ids[:50])
    np.testing.assert_array_equal(remembered.scores(rows, hist.rating_rows(hist.user_ids[:50])),
                                  stored.scores(rows, hist.rating_rows(hist.user_ids[:50])))  # fmt: skip
