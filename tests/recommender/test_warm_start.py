"""Warm-started refits (ALS and iALS): started from the champion's factors, a refit of the same parameters reaches
the cold fit's quality in a fraction of the iterations; used only at scale, and keyed apart in the fit cache."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cinematch.core.settings import Settings
from cinematch.datasets.generate import generate_tables
from cinematch.datasets.generate_config import GenerateConfig
from cinematch.ingest.bronze import ingest_file
from cinematch.lakehouse.etl import run_etl
from cinematch.recommender import registry
from cinematch.recommender.als import ALSModel
from cinematch.recommender.als_params import ALSParams
from cinematch.recommender.fit_cache import CachedTrainer
from cinematch.recommender.ials import IALS, IALSParams
from cinematch.recommender.interactions import histories
from cinematch.recommender.ranker import Component, Ranker
from cinematch.recommender.trainer import LOCAL
from cinematch.recommender.training import fit_ranker, params_from_settings, train_warehouse
from cinematch.recommender.training_set import stable_split
from cinematch.recommender.tuning import Choice, RankingConfig, select
from cinematch.storage.warehouse import write_session

PARAMS = IALSParams(factors=8, regularization=2.0, alpha=4.0, iterations=15, seed=5)
CHOICE = Choice({"ials": 1.0}, {"ials": {**PARAMS.__dict__}}).as_dict()


@pytest.fixture(scope="module")
def data() -> tuple[pa.Table, pa.Table]:
    """(earlier ratings, all ratings): the champion is fitted on the first, the refit on the second."""
    ratings = generate_tables(GenerateConfig(users=300, movies=150, ratings=9_000, weeks=1, batch_ratings=300,
                                             seed=8))["ratings"]  # fmt: skip
    train = stable_split(ratings)[0]
    early = train.filter(pa.array(train.column("movie_id").to_numpy() % 10 != 0))  # later: 10% more movies
    return early, train


def test_a_warm_refit_starts_from_the_champions_factors_and_matches_a_cold_fit(data) -> None:
    early, train = data
    champion = IALS.fit(histories(early).binary, histories(early).item_ids, PARAMS)
    hist = histories(train)
    init = champion.warm_start_factors(hist.item_ids, PARAMS)
    assert init is not None and init.shape == (len(hist.item_ids), PARAMS.factors)
    known = np.isin(hist.item_ids, champion.item_ids)
    assert 0 < (~known).sum() < len(known)  # movies the champion never saw start from the seeded factors
    np.testing.assert_array_equal(init[known], champion.item_factors)
    seeded = np.random.default_rng(PARAMS.seed).random((len(hist.item_ids), PARAMS.factors), dtype=np.float32) * 0.01
    np.testing.assert_array_equal(init[~known], seeded[~known].astype(np.float32))
    assert champion.warm_start_factors(hist.item_ids, replace(PARAMS, factors=4)) is None
    assert champion.warm_start_factors(hist.item_ids, replace(PARAMS, alpha=2.0)) is None

    cold = IALS.fit(hist.binary, hist.item_ids, PARAMS)
    warm = IALS.fit(hist.binary, hist.item_ids, PARAMS, warm=(init, 2))
    one = IALS.fit(hist.binary, hist.item_ids, PARAMS, warm=(init, 1))
    assert warm.params == PARAMS and not np.array_equal(warm.item_factors, one.item_factors)
    # the same model up to the optimisation: scores of every user agree closely with the cold fit's
    a, b = cold.scores(hist.binary), warm.scores(hist.binary)
    corr = np.mean([np.corrcoef(x, y)[0, 1] for x, y in zip(a, b, strict=True)])
    assert corr > 0.96  # 0.969 measured
    # and far closer than 2 iterations from the seeded start
    short = IALS.fit(hist.binary, hist.item_ids, replace(PARAMS, iterations=2))
    corr_short = np.mean([np.corrcoef(x, y)[0, 1] for x, y in zip(a, short.scores(hist.binary), strict=True)])
    assert corr > corr_short


def test_a_warm_unit_confidence_refit_starts_from_the_given_factors(data) -> None:
    """α = 1 is solved by CineMatch's exact alternating solves: a warm start runs them from the given factors."""
    train = data[1]
    params = replace(PARAMS, alpha=1.0)
    hist = histories(train)
    cold = IALS.fit(hist.binary, hist.item_ids, params)
    assert cold.trainer == "cinematch"
    init = cold.warm_start_factors(hist.item_ids, params)
    assert init is not None
    np.testing.assert_array_equal(init, cold.item_factors)
    # from the cold fit's own (converged) factors one more pass moves them little; from the seeded start it would not
    again = IALS.fit(hist.binary, hist.item_ids, params, warm=(init, 1))
    one = IALS.fit(hist.binary, hist.item_ids, replace(params, iterations=1))
    drift = np.abs(again.item_factors - cold.item_factors).max()
    assert drift < 0.1 * np.abs(one.item_factors - cold.item_factors).max()


def test_a_refit_of_the_champions_choice_is_warm_only_from_the_size_threshold(data) -> None:
    early, train = data
    champion = Ranker([Component("ials", IALS.fit(histories(early).binary, histories(early).item_ids, PARAMS))])
    fits = {}
    for name, min_ratings, iterations in (("warm", 0, 2), ("small", train.num_rows + 1, 2), ("off", 0, 0)):
        settings = Settings(home=Path("/nonexistent"), seed=5, warm_start_min_ratings=min_ratings,
                            warm_start_iterations=iterations)  # fmt: skip
        fits[name] = fit_ranker(train, settings, CHOICE, tune=False, champion=champion)
    cold = select(train, RankingConfig(seed=5), CHOICE, full=False)
    assert fits["warm"].catalogue["warm_start"] == {"iterations": 2, "from_items": champion.n_items}
    for name in ("small", "off"):
        assert "warm_start" not in fits[name].catalogue
        np.testing.assert_array_equal(fits[name].ranker.components[0].model.item_factors,
                                      cold.ranker.components[0].model.item_factors)  # fmt: skip
    assert not np.array_equal(fits["warm"].ranker.components[0].model.item_factors,
                              cold.ranker.components[0].model.item_factors)  # fmt: skip
    # a search never starts from the champion
    searched = fit_ranker(train, Settings(home=Path("/nonexistent"), warm_start_min_ratings=0), CHOICE, tune=True,
                          champion=champion)  # fmt: skip
    assert "warm_start" not in searched.catalogue


def test_the_fit_cache_makes_warm_refits_without_keeping_them(data, tmp_path: Path) -> None:
    """A warm refit starts from one policy's champion: the cache passes it through (no 17M-row sort and hash),
    while cold refits of the same rows are still stored and reused."""
    early, train = data
    champion = Ranker([Component("ials", IALS.fit(histories(early).binary, histories(early).item_ids, PARAMS))])
    before = ALSModel.fit(*_cols(early), ALSParams(rank=4, iterations=6, seed=2))
    config, params = RankingConfig(seed=5), ALSParams(rank=4, iterations=6, seed=2)
    cache = CachedTrainer(LOCAL, tmp_path)
    warm = cache.fit_ranking(train, config, CHOICE, False, None, champion)
    warm_als = cache.fit_ratings(train, params, None, (before, 2))
    assert "warm_start" in warm.catalogue and len(warm_als.train_rmse) == 2
    assert not list(tmp_path.glob("*/fit.json"))
    direct = select(train, config, CHOICE, full=False, warm=champion)
    np.testing.assert_array_equal(warm.ranker.components[0].model.item_factors,
                                  direct.ranker.components[0].model.item_factors)  # fmt: skip
    cold = cache.fit_ranking(train, config, CHOICE, False, None)
    cache.fit_ratings(train, params, None)
    assert "warm_start" not in cold.catalogue and len(list(tmp_path.glob("*/fit.json"))) == 2
    again = CachedTrainer(LOCAL, tmp_path)
    again.fit_ranking(train, config, CHOICE, False, None)
    again.fit_ratings(train, params, None)
    assert again.hits == 2


def _cols(table: pa.Table) -> list[np.ndarray]:
    return [table.column(c).to_numpy() for c in ("user_id", "movie_id", "rating")]


def test_a_warm_als_refit_starts_from_the_previous_factors_and_biases(data) -> None:
    early, train = data
    params = ALSParams(rank=6, iterations=12, seed=4)
    before = ALSModel.fit(*_cols(early), params)
    cold = ALSModel.fit(*_cols(train), params)
    warm = ALSModel.fit(*_cols(train), params, warm=(before, 2))
    assert len(warm.train_rmse) == 2 and len(cold.train_rmse) == 12
    assert warm.train_rmse[-1] <= cold.train_rmse[-1] * 1.02  # two iterations from there, about where twelve get
    short = ALSModel.fit(*_cols(train), replace(params, iterations=2))
    assert warm.train_rmse[-1] < short.train_rmse[-1]
    start = before.warm_start(cold.user_ids, cold.item_ids, params, 2)
    assert start is not None and start.iterations == 2
    known = np.isin(cold.item_ids, before.item_ids)
    assert np.isnan(start.items[~known]).all() and not np.isnan(start.items[known]).any()
    pos = np.searchsorted(before.item_ids, cold.item_ids[known])
    np.testing.assert_array_equal(start.items[known, :6], before.item_factors[pos])
    np.testing.assert_array_equal(start.items[known, 6], before.item_bias[pos])
    # another rank, or no iterations: a cold fit
    assert before.warm_start(cold.user_ids, cold.item_ids, replace(params, rank=4), 2) is None
    same = ALSModel.fit(*_cols(train), replace(params, rank=4), warm=(before, 2))
    np.testing.assert_array_equal(same.item_factors, ALSModel.fit(*_cols(train), replace(params, rank=4)).item_factors)


def _load(settings: Settings, table: pa.Table, path: Path) -> None:
    pq.write_table(table, path)
    with write_session(settings) as con:
        ingest_file(con, path)
        run_etl(con, settings, write_lake=False)


def test_a_warehouse_retrain_at_scale_starts_both_models_from_the_champion(tmp_path: Path) -> None:
    tables = generate_tables(GenerateConfig(users=300, movies=150, ratings=8_000, weeks=1, batch_ratings=600, seed=9))
    versions = {}
    for name, min_ratings in (("warm", 0), ("cold", 10**9)):
        settings = Settings(home=tmp_path / name, warm_start_min_ratings=min_ratings, warm_start_iterations=2)
        params = params_from_settings(settings, rank=6, iterations=8)
        _load(settings, tables["ratings"], tmp_path / "base.parquet")
        with write_session(settings) as con:
            first = train_warehouse(con, settings, params)
        _load(settings, tables["batch_w1"], tmp_path / "week.parquet")
        with write_session(settings) as con:
            second = train_warehouse(con, settings, params)
        versions[name] = [registry.load_model(settings, v["version"]) for v in (first, second)]
    assert [len(m.train_rmse) for m in versions["warm"]] == [8, 2]  # the first has no champion to start from
    assert [len(m.train_rmse) for m in versions["cold"]] == [8, 8]
    np.testing.assert_array_equal(versions["warm"][0].item_factors, versions["cold"][0].item_factors)
