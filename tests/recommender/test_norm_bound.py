"""Lists by norm bounds (``norm_bound``) equal a full scoring and sort of every user's row, while reading only
the items that can still enter them."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from cinematch.recommender import norm_bound
from cinematch.recommender.norm_bound import NormIndex, top_n_inner


def skewed_catalogue(rng: np.random.Generator, items: int, k: int) -> np.ndarray:
    """Item factors whose norms fall over three decades, as popularity spreads them in a trained model."""
    directions = rng.standard_normal((items, k))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return (directions * np.geomspace(10.0, 0.01, items)[rng.permutation(items), None]).astype(np.float32)


def full_lists(users: np.ndarray, items: np.ndarray, seen: sp.csr_matrix, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference: every score, seen items out, best first with ties to the lower column."""
    scores = users @ items.T
    ids = np.full((len(users), n), -1, np.int64)
    vals = np.full((len(users), n), np.nan)
    for row in range(len(users)):
        order = [j for j in np.lexsort((np.arange(len(items)), -scores[row])) if j not in set(seen[row].indices)][:n]
        ids[row, : len(order)], vals[row, : len(order)] = order, scores[row, order]
    return ids, vals


def random_seen(rng: np.random.Generator, users: int, items: int, per_user: int) -> sp.csr_matrix:
    rows = np.repeat(np.arange(users), per_user)
    cols = np.concatenate([rng.choice(items, per_user, replace=False) for _ in range(users)])
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(users, items))


def test_lists_equal_a_full_sort_of_each_row_over_several_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(norm_bound, "FIRST_STAGE", 50)  # stages of 50, 100, 200, ... items
    rng = np.random.default_rng(7)
    items = skewed_catalogue(rng, 1500, 8)
    users = rng.standard_normal((120, 8)).astype(np.float32)
    seen = random_seen(rng, 120, 1500, 40)
    stages: list[tuple[int, int, int]] = []
    scored = norm_bound._score_stage

    def counting(index, users_, group, lo, hi, *rest) -> None:  # type: ignore[no-untyped-def]
        stages.append((len(group), lo, hi))
        scored(index, users_, group, lo, hi, *rest)

    monkeypatch.setattr(norm_bound, "_score_stage", counting)
    ids, vals = top_n_inner(NormIndex.build(items), users, seen, 10)
    expected_ids, expected_vals = full_lists(users, items, seen, 10)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(vals, expected_vals, rtol=1e-5, atol=1e-6)
    # the bound prunes: users drop out stage by stage, none reads the catalogue's tail (norms under 1 % of the top)
    assert [g for g, _, _ in stages] == sorted((g for g, _, _ in stages), reverse=True) and stages[-1][0] < 120
    assert max(hi for _, _, hi in stages) <= 800
    assert sum(g * (hi - lo) for g, lo, hi in stages) < 0.3 * 120 * 1500


def test_ties_go_to_the_lower_column_and_short_lists_are_padded() -> None:
    rng = np.random.default_rng(1)
    base = rng.standard_normal((6, 4)).astype(np.float32)
    items = np.vstack([base, base, np.zeros((3, 4), np.float32)])  # each of 0-5 tied with its copy 6-11
    users = rng.standard_normal((5, 4)).astype(np.float32)
    seen = random_seen(rng, 5, 15, 9)
    ids, vals = top_n_inner(NormIndex.build(items), users, seen, 10)
    expected_ids, expected_vals = full_lists(users, items, seen, 10)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(vals, expected_vals, rtol=1e-6)
    assert (ids[:, 6:] == -1).all() and np.isnan(vals[:, 6:]).all()  # 15 items - 9 seen = 6 per list


def test_the_bound_is_widened_beyond_float32_rounding() -> None:
    """An item just under the bound must not be skipped: the slack exceeds k-term float32 rounding."""
    index = NormIndex.build(np.ones((3, 64), np.float32))
    assert index.slack > 64 * float(np.finfo(np.float32).eps)
    assert index.norms[-1] == 0.0 and (np.diff(index.norms) <= 0).all()
    assert index.stages(10) == [(0, 3)]
