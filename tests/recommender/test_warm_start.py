"""Warm-started iALS refits: started from the champion's item factors, a refit of the same parameters reaches the
cold fit's quality in a fraction of the iterations; it is used only at scale and keyed apart in the fit cache."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from cinematch.core.settings import Settings
from cinematch.datasets.generate import generate_tables
from cinematch.datasets.generate_config import GenerateConfig
from cinematch.recommender.fit_cache import CachedTrainer
from cinematch.recommender.ials import IALS, IALSParams
from cinematch.recommender.interactions import histories
from cinematch.recommender.ranker import Component, Ranker
from cinematch.recommender.trainer import LOCAL
from cinematch.recommender.training import fit_ranker
from cinematch.recommender.training_set import stable_split
from cinematch.recommender.tuning import Choice, RankingConfig, select

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


def test_the_fit_cache_keeps_warm_refits_apart_by_the_factors_they_start_from(data, tmp_path: Path) -> None:
    early, train = data
    first = Ranker([Component("ials", IALS.fit(histories(early).binary, histories(early).item_ids, PARAMS))])
    other = Ranker([Component("ials", IALS.fit(histories(early).binary, histories(early).item_ids,
                                               replace(PARAMS, seed=6)))])  # fmt: skip
    config = RankingConfig(seed=5)
    cache = CachedTrainer(LOCAL, tmp_path)
    cold = cache.fit_ranking(train, config, CHOICE, False, None)
    warm = cache.fit_ranking(train, config, CHOICE, False, None, first)
    assert cache.hits == 0 and "warm_start" in warm.catalogue and "warm_start" not in cold.catalogue
    again = CachedTrainer(LOCAL, tmp_path).fit_ranking(train, config, CHOICE, False, None, first)
    np.testing.assert_array_equal(again.ranker.components[0].model.item_factors,
                                  warm.ranker.components[0].model.item_factors)  # fmt: skip
    fresh = CachedTrainer(LOCAL, tmp_path)
    fresh.fit_ranking(train, config, CHOICE, False, None, other)
    assert fresh.hits == 0
