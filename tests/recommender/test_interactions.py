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


def test_positions_equal_lookup_with_absent_ids_at_minus_one() -> None:
    from cinematch.recommender.interactions import positions

    rng = np.random.default_rng(7)
    for known in (np.unique(rng.integers(1, 60_000, 20_000)), np.unique(rng.integers(40_000, 90_000, 20_000))):
        for ids in (rng.choice(known, 50_000), rng.integers(-5, 95_000, 50_000), rng.integers(-(2**40), 2**40, 9)):
            pos, ok = lookup(known, ids)
            np.testing.assert_array_equal(positions(known, ids), np.where(ok, pos, -1))
    assert positions(known[:0], np.array([1])).tolist() == [-1] and positions(known, np.array([], np.int64)).size == 0
    repeated = np.array([1, 3, 3, 3, 7])  # a repeated id gives its first position, by the table or a binary search
    for ids in (np.full(5_000, 3), np.array([3])):
        assert set(positions(repeated, ids).tolist()) == {1} and set(lookup(repeated, ids)[0].tolist()) == {1}


def _scipy_histories(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, user_ids: np.ndarray,
                     item_ids: np.ndarray) -> np.ndarray:  # fmt: skip
    """The dense users x items mean rating (0 where none) of the pairs whose user and item are known."""
    import scipy.sparse as sp

    pos_u, ok_u = lookup(user_ids, users)
    pos_i, ok_i = lookup(item_ids, items)
    keep = ok_u & ok_i
    shape = (len(user_ids), len(item_ids))
    total = sp.csr_matrix((ratings[keep], (pos_u[keep], pos_i[keep])), shape=shape).toarray()
    count = sp.csr_matrix((np.ones(int(keep.sum())), (pos_u[keep], pos_i[keep])), shape=shape).toarray()
    return np.divide(total, count, out=np.zeros(shape), where=count > 0)


def test_histories_equal_a_scipy_build_for_half_stars_other_ratings_repeats_and_unknown_ids() -> None:
    """The sorted-key build (half stars in the key, or an argsort for other ratings) against SciPy's COO sum:
    unknown users and items left out, a repeated pair gets the mean of its ratings, rows canonical."""
    import pyarrow as pa

    from cinematch.recommender.interactions import histories

    rng = np.random.default_rng(8)
    users, items = rng.integers(1, 300, 20_000), rng.integers(1, 400, 20_000)  # many repeated pairs
    for ratings in (rng.integers(1, 11, 20_000) / 2, rng.uniform(0.5, 5.0, 20_000).round(3)):
        table = pa.table({"user_id": users, "movie_id": items, "rating": ratings})
        user_ids, item_ids = np.arange(2, 300, 2), np.arange(1, 350)  # odd users and items above 349 unknown
        hist = histories(table, item_ids, user_ids)
        expected = _scipy_histories(users, items, ratings, user_ids, item_ids)
        np.testing.assert_allclose(hist.ratings.toarray(), expected, rtol=1e-6)
        np.testing.assert_array_equal(hist.binary.toarray(), (expected > 0).astype(np.float32))
        for m in (hist.ratings, hist.binary):  # each row's columns strictly increasing (sorted, no repeats)
            row = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
            assert np.all(np.diff(m.indices)[row[1:] == row[:-1]] > 0)
