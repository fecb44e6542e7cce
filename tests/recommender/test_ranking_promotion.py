"""Promotion judged on what is served, a split that does not move with CINEMATCH_SEED, cold start through
publish without retraining, and retention of the large model files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from cinematch.core.settings import Settings
from cinematch.datasets.generate import generate_tables
from cinematch.datasets.generate_config import GenerateConfig
from cinematch.ingest.bronze import ingest_file
from cinematch.lakehouse.etl import run_etl
from cinematch.recommender import registry
from cinematch.recommender.als import ALSModel
from cinematch.recommender.als_params import ALSParams
from cinematch.recommender.evaluation import compare, evaluate_version, evaluation_users
from cinematch.recommender.ials import IALS, IALSParams
from cinematch.recommender.interactions import histories
from cinematch.recommender.ranker import Component, Ranker
from cinematch.recommender.training import params_from_settings, train_warehouse
from cinematch.recommender.training_set import stable_split
from cinematch.recommender.tuning import RankingConfig, select
from cinematch.serving.publish import publish
from cinematch.storage.warehouse import write_session
from cinematch.web.api import create_app

SMALL = {"rank": 8, "iterations": 6}


@pytest.fixture(scope="module")
def tasteful():
    """Generated ratings with latent tastes: a personalised ranker beats a popularity-like one on them."""
    tables = generate_tables(GenerateConfig(users=400, movies=200, ratings=12_000, weeks=1, batch_ratings=500, seed=5))
    return tables


def _als(train, **params) -> ALSModel:
    cols = [train.column(c).to_numpy() for c in ("user_id", "movie_id", "rating")]
    return ALSModel.fit(*cols, ALSParams(**params))


def test_promotion_refuses_a_worse_ranker_even_with_a_better_rmse(tasteful) -> None:
    train, test = stable_split(tasteful["ratings"])
    good_als, bad_als = _als(train, rank=8, iterations=8), _als(train, rank=2, iterations=1, reg=5.0)
    good_ranker = select(train, RankingConfig(), full=False).ranker  # EASE family, the default choice
    hist = histories(train, good_ranker.item_ids)
    weak = IALS.fit(hist.binary, hist.item_ids, IALSParams(factors=1, regularization=1.0, alpha=1.0, iterations=2))
    bad_ranker = Ranker([Component("ials", weak)])

    challenger, champion = (good_als, bad_ranker), (bad_als, good_ranker)
    ranking = compare(challenger, champion, train, test)
    assert ranking["challenger_rmse_same_rows"] < ranking["champion_rmse_same_rows"]  # better ratings...
    assert ranking["ndcg_diff_high"] < 0  # ...but clearly worse lists
    decision = registry.decide_promotion(ranking["challenger_rmse_same_rows"], ranking["champion_rmse_same_rows"],
                                         0.0, "version_champion", ranking, 0.01)  # fmt: skip
    assert decision["decision"] == "rejected" and "ndcg@10" in decision["reason"]

    # the same lists with the better ratings model: promoted; better lists with worse ratings: refused
    both_better = compare((good_als, good_ranker), (bad_als, bad_ranker), train, test)
    assert registry.decide_promotion(both_better["challenger_rmse_same_rows"], both_better["champion_rmse_same_rows"],
                                     0.0, "v", both_better, 0.01)["decision"] == "promoted"  # fmt: skip
    worse_rmse = compare((bad_als, good_ranker), (good_als, bad_ranker), train, test)
    assert registry.decide_promotion(worse_rmse["challenger_rmse_same_rows"], worse_rmse["champion_rmse_same_rows"],
                                     0.0, "v", worse_rmse, 0.01)["decision"] == "rejected"  # fmt: skip


def test_both_versions_score_the_same_rows_from_the_same_histories(tasteful) -> None:
    train, test = stable_split(tasteful["ratings"])
    als = _als(train, rank=4, iterations=3)
    ranker = select(train, RankingConfig(), full=False).ranker
    same = compare((als, ranker), (als, ranker), train, test)
    assert same["ndcg_diff"] == 0 and same["ndcg_diff_low"] == 0 and same["ndcg_diff_high"] == 0
    assert same["challenger_ndcg"] == same["champion_ndcg"] > 0 and same["eval_rows"] == test.num_rows


def test_the_challenger_lists_from_evaluation_give_the_same_comparison(tasteful) -> None:
    """train_warehouse hands compare the lists evaluate_version scored; the decision must not change by it."""
    train, test = stable_split(tasteful["ratings"])
    good, bad = _als(train, rank=8, iterations=8), _als(train, rank=2, iterations=1, reg=5.0)
    ranker = select(train, RankingConfig(), full=False).ranker
    hist = histories(train, ranker.item_ids)
    weak = Ranker([Component("ials", IALS.fit(hist.binary, hist.item_ids, IALSParams(factors=2, iterations=2)))])
    _, _, lists = evaluate_version(good, ranker, train, test)
    reused = compare((good, ranker), (bad, weak), train, test, challenger_lists=lists)
    assert reused == compare((good, ranker), (bad, weak), train, test)
    assert reused["challenger_ndcg"] != reused["champion_ndcg"]
    with pytest.raises(ValueError, match="challenger lists"):
        compare((good, ranker), (bad, weak), train, test, challenger_lists=lists[:, :5])


def test_top_n_lists_are_scored_on_a_seeded_sample_of_test_users_and_ratings_on_every_row(tasteful) -> None:
    train, test = stable_split(tasteful["ratings"])
    everyone = evaluation_users(test)
    assert len(everyone) > 300 and np.array_equal(evaluation_users(test, len(everyone)), everyone)
    sample = evaluation_users(test, 150, seed=3)
    assert len(sample) == 150 and np.isin(sample, everyone).all() and (np.diff(sample) > 0).all()
    assert np.array_equal(evaluation_users(test, 150, seed=3), sample)
    assert not np.array_equal(evaluation_users(test, 150, seed=4), sample)
    # bottom-k by a hash of the id: a user sampled from all the data is sampled from any part holding it
    part = test.filter(pa.array(test.column("user_id").to_numpy() % 2 == 0))
    held = sample[np.isin(sample, part.column("user_id").to_numpy())]
    assert len(held) and np.isin(held, evaluation_users(part, 150, seed=3)).all()

    good, bad = _als(train, rank=8, iterations=8), _als(train, rank=2, iterations=1, reg=5.0)
    ranker = select(train, RankingConfig(), full=False).ranker
    full, _, _ = evaluate_version(good, ranker, train, test)
    sampled, users, lists = evaluate_version(good, ranker, train, test, max_users=150, seed=3)
    assert np.array_equal(users, sample) and lists.shape == (150, 10)
    rows = test.filter(pa.array(np.isin(test.column("user_id").to_numpy(), sample)))
    alone, _, _ = evaluate_version(good, ranker, train, rows)  # the same users' rows evaluated on their own
    for key in ("ndcg_at_10", "precision_at_10", "recall_at_10", "coverage", "n_users_evaluated"):
        assert sampled[key] == alone[key], key
    assert sampled["baseline"] == alone["baseline"]
    assert sampled["rmse"] == full["rmse"] != alone["rmse"] and sampled["n_test"] == test.num_rows
    assert sampled["eval_user_sample"]["users"] == 150 and sampled["n_test_users"] == len(everyone)
    assert "eval_user_sample" not in full
    weak = (bad, Ranker([Component("ials", IALS.fit(histories(train, ranker.item_ids).binary, ranker.item_ids,
                                                     IALSParams(factors=2, iterations=2)))]))  # fmt: skip
    judged = compare((good, ranker), weak, train, test, challenger_lists=lists, max_users=150, seed=3)
    assert judged == compare((good, ranker), weak, train, test, max_users=150, seed=3)
    assert judged["challenger_ndcg"] == pytest.approx(sampled["ndcg_at_10"])
    assert judged["eval_users"] == sampled["n_users_evaluated"] and judged["ranked_rows"] == rows.num_rows
    assert judged["challenger_rmse_same_rows"] == full["rmse"]


def _warehouse(settings: Settings, tables, tmp_path: Path) -> None:
    path = tmp_path / "ratings.parquet"
    pq.write_table(tables["ratings"], path)
    with write_session(settings) as con:
        ingest_file(con, path)
        run_etl(con, settings, write_lake=False)


def test_the_split_does_not_move_with_cinematch_seed(tasteful, tmp_path: Path) -> None:
    docs = []
    for seed in (42, 7):
        settings = Settings(home=tmp_path / f"home{seed}", seed=seed)
        _warehouse(settings, tasteful, tmp_path)
        with write_session(settings) as con:
            docs.append(train_warehouse(con, settings, params_from_settings(settings, **SMALL)))
            test_keys = con.sql("select count(*) from silver.ratings").fetchall()[0][0]
        meta = registry.load_metadata(settings, docs[-1]["version"])
        assert meta["split"]["rule"].startswith("stable-hash") and "seed" not in json.dumps(meta["split"])
        assert test_keys == tasteful["ratings"].num_rows
    assert docs[0]["n_test"] == docs[1]["n_test"] and docs[0]["n_train"] == docs[1]["n_train"]
    # the rows themselves: the split is a function of the data only
    a, b = stable_split(tasteful["ratings"]), stable_split(tasteful["ratings"].slice(0))
    assert a[1].equals(b[1])


def test_a_new_user_gets_a_personal_list_after_etl_and_publish_without_training(tasteful, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", api_key=None)
    _warehouse(settings, tasteful, tmp_path)
    with write_session(settings) as con:
        trained = train_warehouse(con, settings, params_from_settings(settings, **SMALL))
        top = con.sql("select movie_id from silver.ratings group by movie_id order by count(*) desc limit 3")
        liked = [int(m) for (m,) in top.fetchall()]
    new_user = 900_001
    batch = tasteful["ratings"].slice(0, 3)
    batch = batch.set_column(0, "user_id", [[new_user] * 3]).set_column(1, "movie_id", [liked])
    batch = batch.set_column(batch.schema.get_field_index("batch_id"), "batch_id", [["new_user"] * 3]) \
        if "batch_id" in batch.schema.names else batch  # fmt: skip
    path = tmp_path / "new_user.parquet"
    pq.write_table(batch, path)
    with write_session(settings) as con:
        ingest_file(con, path)
        run_etl(con, settings, write_lake=False)
        publish(con, settings)
        assert registry.champion(con)["version"] == trained["version"]  # no retraining happened
    client = TestClient(create_app(settings))
    doc = client.get(f"/recommendations/{new_user}", params={"k": 10}).json()
    assert doc["fallback"] is False and doc["model_version"] == trained["version"]
    items = doc["items"]
    assert len(items) == 10 and not {i["movie_id"] for i in items} & set(liked)
    named = {b["movie_id"] for i in items for b in i["because"]}
    assert named and named <= set(liked)  # "because you rated ..." names the new user's own ratings
    assert all(b["title"] for i in items for b in i["because"])
    cold = client.get("/recommendations/987654321").json()
    assert cold["fallback"] is True and all(i["because"] == [] for i in cold["items"])


def test_retention_keeps_champion_previous_and_last_n(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    versions = [f"version_2024010{i}T000000_000000Z" for i in range(1, 7)]
    with write_session(settings) as con:
        for v in versions:
            folder = registry.model_dir(settings, v)
            (folder / "ranking").mkdir(parents=True)
            (folder / "ranking" / "big.npy").write_bytes(b"x" * 100)
            (folder / "user_factors.npy").write_bytes(b"x" * 100)
            (folder / "metadata.json").write_text("{}")
            (folder / "als_model.json").write_text("{}")
        con.execute("update ops.model_registry set is_champion = false")
        for seq, v in enumerate((versions[0], versions[1], versions[2])):
            con.execute("insert into ops.champion_history values (?, ?, 'promote', now()::timestamp, null, null)",
                        [seq, v])  # fmt: skip
        con.execute("insert into ops.model_registry (version, created_at, status, is_champion) "
                    "values (?, now()::timestamp, 'champion', true)", [versions[2]])  # fmt: skip
        removed = registry.prune_files(con, settings, 2)
        assert removed == [versions[0], versions[3]]  # kept: champion (3), previous champion (2), last two (5, 6)
        assert registry.prune_files(con, settings, 2) == []  # idempotent
    for v in versions:
        folder = registry.model_dir(settings, v)
        pruned = v in removed
        assert (folder / "metadata.json").is_file()  # metadata and registry rows stay
        assert (folder / "user_factors.npy").exists() != pruned and (folder / "ranking").exists() != pruned
        assert registry.has_files(settings, v) != pruned
