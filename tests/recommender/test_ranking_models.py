"""Known answers for the ranking models: EASE against its closed form, iALS fold-in against its normal
equations, block-structured data where the right top items are obvious, storage, the new-movie slot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from cinematch.recommender.batch import new_movie_slot, top_n_table
from cinematch.recommender.ease import EASE, EASEParams
from cinematch.recommender.ials import IALS, IALSParams
from cinematch.recommender.interactions import histories
from cinematch.recommender.ranker import Component, Ranker

BLOCK = 10  # items per taste group: movies 101-110 (group A) and 111-120 (group B)


def block_ratings(seed: int = 0, users: int = 60, per_user: int = 6) -> pa.Table:
    """Users 1..30 rate only group A movies, users 31..60 only group B movies: each leaves 4 of its block unrated."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, users + 1):
        first = 101 if u <= users // 2 else 111
        for m in rng.choice(np.arange(first, first + BLOCK), size=per_user, replace=False):
            rows.append((u, int(m), float(rng.integers(6, 11) / 2), 1_700_000_000 + u * 3600 + int(m)))
    u, m, r, t = zip(*rows, strict=True)
    return pa.table({"user_id": pa.array(u, pa.int64()), "movie_id": pa.array(m, pa.int64()),
                     "rating": pa.array(r, pa.float64()),
                     "rated_at": pa.array(np.array(t) * 1_000_000, pa.timestamp("us"))})  # fmt: skip


def ease_reference(x: np.ndarray, l2: float) -> np.ndarray:
    """Steck (2019), eq. 8, in float64: P = (XᵀX + λI)⁻¹, B = I − P·diagMat(1/diag(P)), zero diagonal."""
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def own_block(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    return (users[:, None] <= 30) == (items < 111)


def test_ease_equals_the_closed_form_and_fold_in_reproduces_full_scores() -> None:
    hist = histories(block_ratings())
    x = hist.binary.toarray()
    model = EASE.fit(hist.binary, hist.item_ids, EASEParams(l2=5.0, dropout=0.0))
    np.testing.assert_allclose(model.weights, ease_reference(x, 5.0), atol=1e-5)
    full = model.scores(hist.binary)
    np.testing.assert_allclose(full, x @ ease_reference(x, 5.0), atol=1e-4)
    for user in (0, 17, 45):  # one user's row alone (fold-in) gives exactly that user's row of X·B
        alone = model.scores(sp.csr_matrix(hist.binary[user]))
        np.testing.assert_array_equal(alone[0], full[user])


def test_ease_over_several_blocks_equals_the_closed_form(monkeypatch: pytest.MonkeyPatch) -> None:
    """600 items: the Gram product in column blocks (either product), the triangle mirrored in blocks of 256."""
    from cinematch.recommender import ease

    rng = np.random.default_rng(5)
    x = sp.csr_matrix((rng.random((400, 600)) < 0.05).astype(np.float32))
    exact = (x.T @ x).toarray()
    monkeypatch.setattr(ease, "_DENSE_BLOCK", 400 * 50)  # 12 blocks of 50 dense columns
    for cost in (0, 10**9):  # 0: always the sparse product; 10**9: always the sparse-dense one
        monkeypatch.setattr(ease, "_PAIR_COST", cost)
        np.testing.assert_array_equal(ease.gram_matrix(x), exact)  # counts: exact in float32 either way
        model = EASE.fit(x, np.arange(1, 601), EASEParams(l2=20.0, dropout=0.0))
        np.testing.assert_allclose(model.weights, ease_reference(x.toarray().astype(np.float64), 20.0), atol=2e-5)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_ease_dual_route_equals_the_primal_one(monkeypatch: pytest.MonkeyPatch, dropout: float) -> None:
    """Fewer rows than items: P through the rows x rows system (Woodbury) equals the items x items inverse, and
    both equal the closed form; the route is chosen by its multiply-add count."""
    from cinematch.recommender import ease

    rng = np.random.default_rng(7)
    dense = (rng.random((120, 700)) < 0.06).astype(np.float32)
    dense[3] = 0  # a row without items (and items without rows): both routes cope
    x = sp.csr_matrix(dense)
    assert ease.dual_is_cheaper(120, 700) and not ease.dual_is_cheaper(5_800, 5_900)
    assert ease.dual_is_cheaper(610, 5_900)  # ml-latest-small's users x movies
    weights = {}
    for ratio in (0.0, 1.0):  # 0: always the primal route; 1: the dual one for these 120 x 700
        monkeypatch.setattr(ease, "_DUAL_RATIO", ratio)
        weights[ratio] = EASE.fit(x, np.arange(1, 701), EASEParams(l2=15.0, dropout=dropout)).weights
    scale = np.abs(weights[0.0]).max()
    np.testing.assert_allclose(weights[1.0], weights[0.0], atol=1e-5 * scale)
    if dropout == 0.0:
        np.testing.assert_allclose(
            weights[1.0], ease_reference(x.toarray().astype(np.float64), 15.0), atol=1e-5 * scale
        )


def test_ease_compact_storage_round_trips(tmp_path: Path) -> None:
    hist = histories(block_ratings())
    model = EASE.fit(hist.binary, hist.item_ids, EASEParams(l2=5.0, dropout=0.25, keep_per_item=8))
    full = model.weights.copy()
    stored = model.compact()
    assert stored is model  # in place: no second items x items matrix
    model.save(tmp_path / "ease")
    loaded = EASE.load(tmp_path / "ease")
    np.testing.assert_array_equal(loaded.weights, stored.weights)  # what is evaluated is what is served
    kept = (stored.weights != 0).sum(axis=0)
    assert kept.max() <= 8  # each item keeps its 8 largest input weights
    big = np.abs(full) >= np.sort(np.abs(full), axis=0)[-8][None, :]
    np.testing.assert_allclose(stored.weights[big], full[big], rtol=2e-3, atol=1e-6)  # float16


def test_ease_compaction_over_several_column_blocks_keeps_each_items_largest_weights() -> None:
    """600 items: the compaction works in blocks of 256 columns; every column keeps exactly its 40 largest
    input weights by magnitude (the set, checked against a plain sort), in float16 with its scale."""
    rng = np.random.default_rng(11)
    x = sp.csr_matrix((rng.random((500, 600)) < 0.05).astype(np.float32))
    model = EASE.fit(x, np.arange(1, 601), EASEParams(l2=20.0, dropout=0.1, keep_per_item=40))
    full = model.weights.copy()
    stored = model.compact()
    for j in (0, 255, 256, 511, 512, 599):
        expected = set(np.argsort(-np.abs(full[:, j]), kind="stable")[:40].tolist())
        assert set(np.flatnonzero(stored.weights[:, j]).tolist()) == expected, j
    np.testing.assert_allclose(stored.weights[stored.weights != 0], full[stored.weights != 0],
                               rtol=2e-3, atol=1e-6)  # fmt: skip
    # the arrays stored for `save` give back exactly the compacted weights
    again = EASE._from_compact(model.params, model.item_ids, *model.stored)
    np.testing.assert_array_equal(again.weights, stored.weights)


def test_ials_fold_in_solves_the_normal_equations() -> None:
    hist = histories(block_ratings())
    for reg_per_rating in (False, True):
        params = IALSParams(factors=4, regularization=0.5, alpha=3.0, iterations=10, seed=1,
                            reg_per_rating=reg_per_rating)  # fmt: skip
        model = IALS.fit(hist.binary, hist.item_ids, params)
        if reg_per_rating:
            model = IALS(params, model.item_ids, model.item_factors, trainer="test")
        factors = model.user_factors(hist.binary)
        y = model.item_factors.astype(np.float64)
        for user in (0, 31, 59):
            rated = hist.binary[user].indices
            lam = params.regularization * (len(rated) if reg_per_rating else 1)
            system = y.T @ y + (params.alpha - 1) * y[rated].T @ y[rated] + lam * np.eye(4)
            expected = np.linalg.solve(system, params.alpha * y[rated].sum(axis=0))
            np.testing.assert_allclose(factors[user], expected, rtol=2e-3, atol=2e-4)


def test_ials_lists_over_many_blocks_in_two_threads_equal_a_sort_of_each_users_scores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One user a block (the budget is below one block of the first norm stage), one user an explanation block, two
    threads: every list is still the user's own, and the explanations are those of one block of everyone."""
    from cinematch.recommender import ranker as ranker_module

    rng = np.random.default_rng(3)
    users, items = rng.integers(1, 90, 700), rng.integers(201, 221, 700)
    table = pa.table({"user_id": users, "movie_id": items, "rating": np.full(700, 4.0),
                      "rated_at": pa.array(np.full(700, 1_700_000_000_000_000), pa.timestamp("us"))})  # fmt: skip
    hist = histories(table)
    model = IALS(IALSParams(factors=3, alpha=2.0), hist.item_ids, rng.standard_normal((20, 3)).astype(np.float32), "t")
    ranker = Ranker([Component("ials", model)])
    asked = hist.user_ids[::-1]
    whole = ranker.recommend(hist, asked, 5)
    monkeypatch.setattr(ranker_module, "_STAGE_ELEMENTS", 8 * 20)
    monkeypatch.setattr(ranker_module, "_BECAUSE_ELEMENTS", 1)
    monkeypatch.setattr(ranker_module, "default_threads", lambda: 2)
    ids, scores, because = ranker.recommend(hist, asked, 5)
    np.testing.assert_array_equal(ids, whole[0])
    np.testing.assert_allclose(scores, whole[1], rtol=1e-5)  # BLAS sums blocks of other shapes in another order
    np.testing.assert_array_equal(because, whole[2])
    full = model.user_factors(hist.rows(asked)) @ model.item_factors.T
    for row, user in enumerate(asked):
        seen = set(items[users == user].tolist())
        order = [j for j in np.lexsort((np.arange(20), -full[row])) if hist.item_ids[j] not in seen][:5]
        assert ids[row][ids[row] >= 0].tolist() == hist.item_ids[order].tolist(), user
        np.testing.assert_allclose(scores[row][: len(order)], full[row][order], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kinds", [("ease",), ("ials",), ("ease", "ials")])
def test_block_structured_taste_is_recommended(kinds: tuple[str, ...]) -> None:
    table = block_ratings()
    hist = histories(table)
    comps = []
    if "ease" in kinds:
        comps.append(Component("ease", EASE.fit(hist.binary, hist.item_ids, EASEParams(l2=20.0, dropout=0.0)), 1.0))
    if "ials" in kinds:
        params = IALSParams(factors=2, regularization=0.1, alpha=5.0, iterations=15, seed=3)
        comps.append(Component("ials", IALS.fit(hist.binary, hist.item_ids, params), 1.0))
    ranker = Ranker(comps)
    users = hist.user_ids
    ids, scores, because = ranker.recommend(hist, users, n=4)
    # every user's 4 unrated movies of their own block come first, and nothing already rated is recommended
    assert own_block(users, ids).all()
    rated = {(int(u), int(m)) for u, m in zip(table["user_id"].to_numpy(), table["movie_id"].to_numpy(), strict=True)}
    assert not any((int(u), int(m)) in rated for u, row in zip(users, ids, strict=True) for m in row)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    # because: up to two movies of the user's own history, from the same block
    for u, row in zip(users, because, strict=True):
        named = row[row >= 0]
        assert len(named) > 0 and all((int(u), int(m)) in rated for m in named)


def test_users_without_history_get_the_fallback_and_no_because() -> None:
    table = block_ratings()
    hist = histories(table, user_ids=np.array([1, 999], np.int64))
    model = EASE.fit(histories(table).binary, hist.item_ids, EASEParams(l2=2.0, dropout=0.0))
    ids, scores, because = Ranker([Component("ease", model)]).recommend(
        hist, hist.user_ids, n=3, fallback=np.array([120, 119, 118])
    )
    assert ids[1].tolist() == [120, 119, 118] and np.isnan(scores[1]).all() and (because[1] == -1).all()
    assert own_block(np.array([1]), ids[:1]).all()


def test_ranker_save_load_scores_identically(tmp_path: Path) -> None:
    hist = histories(block_ratings())
    ease = EASE.fit(hist.binary, hist.item_ids, EASEParams(l2=2.0, dropout=0.25)).compact()
    ials = IALS.fit(hist.binary, hist.item_ids, IALSParams(factors=3, regularization=0.1, alpha=2.0, iterations=5))
    ranker = Ranker([Component("ease", ease, 1.0), Component("ials", ials, 0.5)], rating_weight=0.2)
    ranker.save(tmp_path / "ranking")
    again = Ranker.load(tmp_path / "ranking")
    assert again.name == "blend(ease+ials)" and again.rating_weight == 0.2
    a, b = ranker.recommend(hist, hist.user_ids, 5), again.recommend(hist, hist.user_ids, 5)
    for left, right in zip(a, b, strict=True):
        np.testing.assert_allclose(left, right, rtol=1e-5)


def test_a_new_movie_takes_at_most_the_last_slot() -> None:
    table = block_ratings()
    hist = histories(table)
    ranker = Ranker([Component("ease", EASE.fit(hist.binary, hist.item_ids, EASEParams(l2=2.0, dropout=0.0)))])
    # movie 500 is new (not in the model's catalogue) and shares its genre with group A's movies
    new_rows = pa.table({"user_id": pa.array([1, 2, 3], pa.int64()), "movie_id": pa.array([500] * 3, pa.int64()),
                         "rating": pa.array([4.0] * 3), "rated_at": table["rated_at"].slice(0, 3)})  # fmt: skip
    ratings = pa.concat_tables([table, new_rows])
    genres = {"Drama": np.array([*range(101, 111), 500]), "Comedy": np.arange(111, 121)}
    slot = new_movie_slot(ratings, np.array([4, 40]), ranker.item_ids, genres)
    assert slot.tolist() == [500, -1]  # group B users have no taste for its genre
    lists = top_n_table(ranker, ratings, 5, genres=genres).to_pandas()
    new = lists[lists.movie_id == 500]
    assert len(new) > 0 and set(new["rank"]) == {5}  # one slot, the last, and only for users who lack it
    assert set(new.user_id) == set(range(4, 31))  # not to users 1-3, who rated it, nor to group B
    assert (new.because == "").all() and (new.score == 0.0).all()
    assert lists.groupby("user_id").movie_id.nunique().eq(5).all()


def test_unit_confidence_ials_is_solved_exactly() -> None:
    """With α = 1 every cell has confidence 1: each half-step is one shared ridge regression, solved exactly."""
    hist = histories(block_ratings())
    lam = 0.5
    params = IALSParams(factors=4, regularization=lam, alpha=1.0, iterations=40, seed=1)
    model = IALS.fit(hist.binary, hist.item_ids, params)
    assert model.trainer == "cinematch"
    x = hist.binary.toarray().astype(np.float64)
    y = model.item_factors.astype(np.float64)
    p = model.user_factors(hist.binary).astype(np.float64)
    np.testing.assert_allclose(p, x @ y @ np.linalg.inv(y.T @ y + lam * np.eye(4)), rtol=1e-4, atol=1e-6)
    y_next = x.T @ p @ np.linalg.inv(p.T @ p + lam * np.eye(4))  # converged: Y is the ridge solution against P
    assert np.linalg.norm(y_next - y) < 1e-2 * np.linalg.norm(y)  # alternating solves converge slowly in the end
    ids, _, _ = Ranker([Component("ials", model)]).recommend(hist, hist.user_ids, n=4)
    assert own_block(hist.user_ids, ids[:, :2]).all()  # with unit confidences only the head is sure here
