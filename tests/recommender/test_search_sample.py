"""The ranking search on large training data: candidates are fitted on a seeded sample of whole users, and the
chosen EASE λ is scaled back to the whole training set."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from tests.conftest import make_ratings

from cinematch.recommender.tuning import RankingConfig, search_sample, select


def test_small_data_is_searched_whole() -> None:
    table = make_ratings(np.random.default_rng(1), n=500)
    assert search_sample(table, 500, seed=3) is table


def test_the_sample_is_whole_users_within_the_bound_and_seeded() -> None:
    table = make_ratings(np.random.default_rng(2), n=3_000, users=100, movies=90)
    sample = search_sample(table, 1_000, seed=3)
    assert 0 < sample.num_rows <= 1_000
    users = np.unique(sample["user_id"].to_numpy())
    every = table.filter(pa.compute.is_in(table["user_id"], value_set=pa.array(users)))
    assert every.num_rows == sample.num_rows  # each chosen user comes with all their ratings
    # no other user would still fit: the sample stops at the first user that would cross the bound
    assert sample.num_rows > 1_000 - np.bincount(table["user_id"].to_numpy()).max()
    again = search_sample(table, 1_000, seed=3)
    assert again.equals(sample)
    other = search_sample(table, 1_000, seed=4)
    assert set(np.unique(other["user_id"].to_numpy())) != set(users)


def test_a_search_above_the_bound_runs_on_the_sample_and_scales_lambda() -> None:
    table = make_ratings(np.random.default_rng(5), n=6_000, users=150, movies=120)
    whole = select(table, RankingConfig(seed=3, search_max_ratings=100_000))
    sampled = select(table, RankingConfig(seed=3, search_max_ratings=2_000))
    assert whole.catalogue["validation_train_rows"] > 4_000
    assert sampled.catalogue["validation_train_rows"] <= 2_000
    assert sampled.candidates and sampled.ranker.n_items == whole.ranker.n_items  # the whole catalogue is served
    for kind, params in sampled.choice.params.items():
        if kind != "ials":  # λ chosen on the sample's validation part, scaled by the interactions' ratio
            ratio = table.num_rows / sampled.catalogue["validation_train_rows"]
            grid = [c["params"]["l2"] for c in sampled.candidates if c["model"] == kind]
            assert any(abs(params["l2"] - round(l2 * ratio, 3)) < 1e-6 for l2 in grid)


def test_a_full_search_without_ease_candidates_chooses_ials() -> None:
    """A catalogue above the EASE bound (25M generated ratings: 62,500 movies) leaves iALS alone in the search."""
    table = make_ratings(np.random.default_rng(6), n=3_000, users=100, movies=90)
    selection = select(table, RankingConfig(seed=3, ease_max_items=10))
    assert selection.ranker.name == "ials" and selection.catalogue["ease_candidate"] is False
    assert {c["model"] for c in selection.candidates} == {"ials"}


def test_candidates_projected_over_the_fit_budget_are_recorded_but_not_fitted() -> None:
    """The projection is an operation count (same data, same choice); over-budget candidates cannot be chosen."""
    from cinematch.recommender.fit_cost import DataShape, projected_seconds

    big = DataShape(interactions=15_000_000, users=162_000, items=62_000)
    cheap = {"factors": 32, "alpha": 1.0, "iterations": 15}
    costly = {"factors": 192, "alpha": 2.0, "iterations": 15}  # the choice that took 128 s to fit on 25M ratings
    assert projected_seconds("ials", cheap, big) < 60 < 600 < projected_seconds("ials", costly, big)
    assert projected_seconds("ials", costly, DataShape(80_000, 609, 5_700)) < 20  # small data: never near it

    table = make_ratings(np.random.default_rng(6), n=4_000, users=120, movies=100)
    shape = DataShape.of(table, 100)
    costs = {c["factors"] * 1000 + c["iterations"]: projected_seconds("ials", {**c}, shape)
             for c in ({"factors": f, "alpha": a, "iterations": i} for f in (32, 64, 128, 192)
                       for a in (0.5, 1.0, 2.0, 4.0) for i in (8, 15, 25, 40))}  # fmt: skip
    budget = float(np.median(list(costs.values())))
    chosen = select(table, RankingConfig(seed=3, ease_max_items=10, fit_budget_seconds=budget))
    fitted = [c for c in chosen.candidates if "params" in c and c["ndcg_at_10"] is not None]
    skipped = [c for c in chosen.candidates if c.get("skipped")]
    assert fitted and skipped
    assert all(c["projected_seconds"] > budget for c in skipped)
    assert all(c["projected_seconds"] <= budget for c in fitted)
    assert projected_seconds("ials", chosen.choice.params["ials"], shape) <= budget

    nothing = select(table, RankingConfig(seed=3, ease_max_items=10, fit_budget_seconds=1e-9))
    fitted = [c for c in nothing.candidates if "params" in c and c["ndcg_at_10"] is not None]
    assert len(fitted) == 1  # none fits: the cheapest one is fitted and served
    cheapest = min((c for c in nothing.candidates if "params" in c), key=lambda c: c["projected_seconds"])
    assert fitted[0] is cheapest and nothing.choice.params["ials"]["factors"] == cheapest["params"]["factors"]
