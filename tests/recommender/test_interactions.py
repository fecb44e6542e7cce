"""``interactions.lookup`` by its dense table equals a binary search, for ids inside, between and outside the
known range."""

from __future__ import annotations

import numpy as np

from cinematch.recommender.interactions import lookup


def test_dense_lookup_equals_a_binary_search() -> None:
    rng = np.random.default_rng(5)
    known = np.unique(rng.integers(1_000, 60_000, 20_000))
    for ids in (rng.choice(known, 50_000), rng.integers(-5, 70_000, 50_000)):  # all known; some absent or outside
        pos, ok = lookup(known, ids)
        expected = np.minimum(np.searchsorted(known, ids), len(known) - 1)
        np.testing.assert_array_equal(ok, np.isin(ids, known))
        np.testing.assert_array_equal(pos, expected)
    assert not lookup(known, np.array([-(2**62), 2**62]))[1].any()


def test_present_equals_membership_dense_or_not() -> None:
    from cinematch.recommender.interactions import present

    rng = np.random.default_rng(6)
    known = np.unique(rng.integers(1_000, 60_000, 2_000))
    for ids in (rng.integers(-5, 70_000, 50_000), rng.integers(-(2**40), 2**40, 50_000), np.array([known[0], 3])):
        np.testing.assert_array_equal(present(known, ids), np.isin(ids, known))
        np.testing.assert_array_equal(present(known, ids), lookup(known, ids)[1])
    assert not present(known[:0], np.array([1, 2])).any() and present(known, np.array([], np.int64)).size == 0
