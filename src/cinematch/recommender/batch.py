"""Batch recommendations: the champion's top-N for every user in silver, from each user's current history.

Written to ``serving.recommendations`` when a champion changes and again at every ``publish``, so that:

* a user who rated something since the last training is served from those ratings (fold-in: EASE scores the
  history row with its weights, iALS solves the user's factors against the fixed item factors);
* a user with ratings only of movies the model does not know gets the popular-and-recent list;
* a movie that appeared after the last training (outside the model's catalogue) can take the last slot of a
  user's top-N when it is among the most rated new movies of a genre the user rates a lot (genre popularity),
  until the next retrain adds it to the model; it names no ``because``.

Each row's ``because`` holds up to two movie ids of the user's history (comma-separated) that contributed most.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from cinematch.core.log import get_logger, timed
from cinematch.recommender import list_cache
from cinematch.recommender.interactions import (
    Histories,
    epoch_seconds,
    histories,
    lookup,
    positions,
    present,
    unique_ids,
)
from cinematch.recommender.ranker import Ranker, fill_cold

log = get_logger(__name__)

RECENT_DAYS = 90  # "recent" for the cold-start list: the last 90 days of rating activity
_AFFINITY_BLOCK = 4096  # users per block when matching new movies to genre tastes


def popular_recent(ratings: pa.Table, n: int, exclude_placeholder: np.ndarray | None = None) -> np.ndarray:
    """Movie ids ranked by ratings in the last ``RECENT_DAYS`` days of activity, then by all-time ratings."""
    movies = ratings.column("movie_id").to_numpy().astype(np.int64)
    if len(movies) == 0:
        return np.zeros(0, np.int64)
    ts = epoch_seconds(ratings)
    recent = ts >= ts.max() - RECENT_DAYS * 86_400
    ids, total = unique_ids(movies)
    pos, _ = lookup(ids, movies[recent])
    recent_counts = np.bincount(pos, minlength=len(ids))
    keep = np.ones(len(ids), bool)
    if exclude_placeholder is not None and len(exclude_placeholder):
        keep &= ~np.isin(ids, exclude_placeholder)
    order = np.lexsort((ids, -total, -recent_counts))
    return ids[order][keep[order]][:n]


def new_movie_slot(
    ratings: pa.Table,
    users: np.ndarray,
    catalogue: np.ndarray,
    genres: dict[str, np.ndarray],
    hist: Histories | None = None,
) -> np.ndarray:
    """Per user, the best movie outside ``catalogue`` by genre taste x popularity, or -1.

    ``genres`` maps a genre to the movie ids that have it. Taste is the user's share of ratings per genre;
    a new movie scores Σ_g taste_g · [movie in g] · log(1 + its ratings). A user with no rating in any of the
    new movies' genres, or who has rated them all, gets none. ``hist``: the histories of ``users`` over
    ``catalogue`` when the caller has them (the in-catalogue part of the taste then comes from them, without
    another user x movie matrix of every rating; used when no (user, movie) pair repeats, as in silver).
    """
    movies = ratings.column("movie_id").to_numpy().astype(np.int64, copy=False)
    # per distinct rated movie (one gather maps every rating to it): outside the catalogue or not, its genres
    rated, rated_counts = unique_ids(movies)
    is_new = ~np.isin(rated, catalogue)
    new_ids, counts = rated[is_new], rated_counts[is_new]
    out = np.full(len(users), -1, np.int64)
    if len(new_ids) == 0 or not genres:
        return out
    names = sorted(genres)
    member = np.stack([np.isin(rated, genres[g]) for g in names], axis=1).astype(np.float32)  # (rated, genres)
    new_score = member[is_new] * np.log1p(counts).astype(np.float32)[:, None]
    user_col = ratings.column("user_id").to_numpy().astype(np.int64, copy=False)
    taste_seen = _taste_from_histories(hist, users, catalogue, user_col, movies, new_ids, member[is_new], genres, names)
    if taste_seen is None:
        mpos = positions(rated, movies)  # every rated movie is among them
        uidx = positions(users, user_col)
        ok = uidx >= 0
        if not ok.all():
            uidx, mpos = uidx[ok], mpos[ok]
        # the user's genre mix: user x movie counts times the movies' genres (one sparse product)
        shape = (len(users), len(rated))
        counts_matrix = sp.csr_matrix((np.ones(len(uidx), np.float32), (uidx, mpos)), shape=shape)
        taste_seen = counts_matrix @ member, counts_matrix[:, np.flatnonzero(is_new)]
    taste, seen = taste_seen  # seen: (users, new), the new movies each user has rated
    taste /= np.maximum(taste.sum(axis=1, keepdims=True), 1.0)
    for s in range(0, len(users), _AFFINITY_BLOCK):
        scores = taste[s : s + _AFFINITY_BLOCK] @ new_score.T  # (block, new)
        r, c = seen[s : s + _AFFINITY_BLOCK].nonzero()
        scores[r, c] = 0.0  # a new movie the user has already rated is not recommended again
        best = scores.argmax(axis=1)
        has = scores[np.arange(len(best)), best] > 0
        out[s : s + _AFFINITY_BLOCK] = np.where(has, new_ids[best], -1)
    return out


def _taste_from_histories(
    hist: Histories | None,
    users: np.ndarray,
    catalogue: np.ndarray,
    user_col: np.ndarray,
    movies: np.ndarray,
    new_ids: np.ndarray,
    new_member: np.ndarray,
    genres: dict[str, np.ndarray],
    names: list[str],
) -> tuple[np.ndarray, sp.csr_matrix] | None:
    """(taste counts per user and genre, users x new movies rated) from ``hist`` and the new movies' own ratings,
    or None when ``hist`` is not over these users and catalogue or a (user, movie) pair repeats (counts differ)."""
    if hist is None or not (np.array_equal(hist.user_ids, users) and np.array_equal(hist.item_ids, catalogue)):
        return None
    new_pos = positions(new_ids, movies)
    on_new = np.flatnonzero(new_pos >= 0)
    uidx = positions(users, user_col[on_new])
    known = present(users, user_col)
    if hist.binary.nnz != int(np.count_nonzero(known)) - len(on_new) + int(np.count_nonzero(uidx < 0)):
        return None  # a repeated pair (or a rating outside both): the matrix of every rating counts it
    ok = uidx >= 0
    seen = sp.csr_matrix((np.ones(int(ok.sum()), np.float32), (uidx[ok], new_pos[on_new][ok])),
                         shape=(len(users), len(new_ids)))  # fmt: skip
    member = np.stack([np.isin(hist.item_ids, genres[g]) for g in names], axis=1).astype(np.float32)
    taste = np.asarray(hist.binary @ member) + np.asarray(seen @ new_member)
    return taste, seen


def _model_lists(
    ranker: Ranker, ratings: pa.Table, hist: Histories, n: int, cache: Path | None, info: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ranker's own lists for every user of ``hist``: stored ones where the history is unchanged."""
    users = hist.user_ids
    if cache is None:
        return ranker.recommend(hist, users, n, because=True)
    prints = list_cache.fingerprints(ratings, users)
    stored = list_cache.load(cache, n)
    if stored is None:
        ids, scores, because = ranker.recommend(hist, users, n, because=True)
    else:
        ok, pos = stored.reusable(users, prints)
        ids, scores, because = stored.ids[pos], stored.scores[pos], stored.because[pos]
        todo = np.flatnonzero(~ok)
        if len(todo):
            ids[todo], scores[todo], because[todo] = ranker.recommend(hist, users[todo], n, because=True)
        info.update(reused=int(ok.sum()))
        if not len(todo) and len(stored.users) == len(users):  # the file already holds exactly these lists
            list_cache.keep_only(cache)
            return ids, scores, because
    list_cache.save(cache, list_cache.Lists(users, prints, ids, scores, because))
    return ids, scores, because


def top_n_table(
    ranker: Ranker,
    ratings: pa.Table,
    n: int,
    genres: dict[str, np.ndarray] | None = None,
    placeholders: np.ndarray | None = None,
    cache: Path | None = None,
) -> pa.Table:
    """``user_id, rank, movie_id, score, because`` for every user of ``ratings`` (their current histories).

    With ``cache`` (a file of this ranker's version), only users whose history changed since the stored
    lists are scored again (``list_cache``); the cold-start list and the new-movie slot, which depend on
    everyone's ratings, are applied to every user each time.
    """
    users, _ = unique_ids(ratings.column("user_id").to_numpy())
    with timed(log, "batch_recommendations", users=len(users), model=ranker.name) as info:
        hist = histories(ratings, ranker.item_ids, users)
        ids, scores, because = _model_lists(ranker, ratings, hist, n, cache, info)
        fill_cold(ids, scores, np.diff(hist.binary.indptr) == 0, popular_recent(ratings, n, placeholders))
        if genres:
            extra = new_movie_slot(ratings, users, ranker.item_ids, genres, hist)
            put = (extra >= 0) & (np.diff(hist.binary.indptr) > 0)
            ids[put, n - 1] = extra[put]
            scores[put, n - 1] = np.nan
            because[put, n - 1] = -1
            info.update(new_movie_slots=int(put.sum()))
        valid = ids.reshape(-1) >= 0
        text = _because_text(because[:, :, 0].reshape(-1), because[:, :, 1].reshape(-1))
        table = pa.table({
            "user_id": np.repeat(users, n)[valid],
            "rank": np.tile(np.arange(1, n + 1, dtype=np.int32), len(users))[valid],
            "movie_id": ids.reshape(-1)[valid],
            "score": np.nan_to_num(scores.reshape(-1)[valid].astype(np.float64), nan=0.0),  # 0: fallback items
            "because": text.filter(pa.array(valid)),
        })  # fmt: skip
        info.update(rows=table.num_rows)
    return table


def _because_text(first: np.ndarray, second: np.ndarray) -> pa.Array:
    """ "first,second", "first" or "" per slot (ids, -1 where none; a second id only comes with a first), joined
    by Arrow (NumPy's string functions took 3 s for 1.6M slots)."""
    one, two = (pc.cast(pa.array(ids, mask=ids < 0), pa.string()) for ids in (first, second))
    both = pc.binary_join_element_wise(one, two, ",")  # null unless both ids are there
    return pc.coalesce(both, one, pa.scalar(""))
