"""Prequential ("next-period") evaluation: what a champion served, scored against what users did next.

Before a period's ratings reach the model, the lists it published are compared with those ratings. Unlike
the held-out evaluation of training (metrics.py, relevance = rating >= 4), every rating of the period counts as
relevant here: a user who rated a movie right after it was served to them found it worth watching, whatever
they then thought of it. The ranking metrics reuse metrics.py (same nDCG, same coverage), fed with the lists
exactly as served: a user's personal list when they have one, else the cold-start fallback everyone else saw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from cinematch.core.errors import BadInput
from cinematch.core.results import Result
from cinematch.recommender.metrics import catalog_coverage, per_user_ndcg, rmse

# (user_ids, movie_ids) -> (predicted ratings, fallback mask: True where the user or the movie is unknown),
# the contract of ALSModel.predict (metrics.RatingPredictor).
Predict = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(eq=False)
class ServedScores(Result):
    """Top-k quality of the served lists over the users who rated in the period (None without such users).

    hit_rate: share of those users with at least one served movie among the ones they rated; ndcg: mean
    binary-gain nDCG@k; coverage: distinct movies served to them / catalogue size; fallback_share: share of
    them who were served the cold-start fallback instead of a personal list.
    """

    k: int
    n_users: int
    hit_rate: float | None
    ndcg: float | None
    coverage: float | None
    fallback_share: float | None


@dataclass(eq=False)
class RatingScores(Result):
    """RMSE of the predicted ratings over the period's pairs whose user and movie the model knows.

    n_unknown counts the other pairs (not scored: a fallback guess is no test of the model's factors).
    """

    rmse: float | None
    n_known: int
    n_unknown: int


def _ids(table: pa.Table, column: str, what: str) -> np.ndarray:
    if column not in table.column_names:
        raise BadInput(f"the {what} table has no {column} column")
    values = table.column(column)
    if values.null_count:
        raise BadInput(f"the {what} table has {values.null_count} null values in {column}")
    return np.asarray(values.to_numpy(), dtype=np.int64)


def _slots(ranks: np.ndarray, k: int, what: str) -> np.ndarray:
    """Whether each rank is within the top k; ranks are 1-based positions, so rank r is column r - 1."""
    if ranks.size and ranks.min() < 1:
        raise BadInput(f"the {what} ranks start at 1, found {int(ranks.min())}")
    within: np.ndarray = ranks <= k
    return within


def _fallback_row(fallback: pa.Table, k: int) -> np.ndarray:
    """The fallback's top k as one row of movie ids (-1 where it has no movie at a rank)."""
    movies, ranks = _ids(fallback, "movie_id", "fallback"), _ids(fallback, "rank", "fallback")
    if len(np.unique(ranks)) != len(ranks):
        raise BadInput("the fallback list has two movies at the same rank")
    row = np.full(k, -1, dtype=np.int64)
    within = _slots(ranks, k, "fallback")
    row[ranks[within] - 1] = movies[within]
    return row


def served_lists(lists: pa.Table, fallback: pa.Table, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(top-k matrix, served-the-fallback mask) for sorted unique ``users``: row j is what users[j] was served.

    A user with any row in ``lists`` was served that personal list (truncated to k), everyone else the
    fallback. Slots without a movie hold -1, which metrics.py never counts as a hit.
    """
    list_users = _ids(lists, "user_id", "lists")
    list_movies, list_ranks = _ids(lists, "movie_id", "lists"), _ids(lists, "rank", "lists")
    order = np.lexsort((list_ranks, list_users))
    u, r = list_users[order], list_ranks[order]
    if np.any((u[1:] == u[:-1]) & (r[1:] == r[:-1])):
        raise BadInput("a personal list has two movies at the same rank")
    within = _slots(list_ranks, k, "lists")
    personal = np.unique(list_users)
    pos = np.minimum(np.searchsorted(personal, users), max(len(personal) - 1, 0))
    has_list = (personal[pos] == users) if len(personal) else np.zeros(len(users), dtype=bool)

    recommended = np.full((len(users), k), -1, dtype=np.int64)
    recommended[~has_list] = _fallback_row(fallback, k)
    # Rows of lists for evaluated users within the top k, scattered to (user row, rank - 1).
    row = np.searchsorted(users, list_users)
    row_c = np.minimum(row, max(len(users) - 1, 0))
    keep = within & (users[row_c] == list_users) if len(users) else np.zeros(len(list_users), dtype=bool)
    recommended[row_c[keep], list_ranks[keep] - 1] = list_movies[keep]
    return recommended, ~has_list


def score_served(
    lists: pa.Table, fallback: pa.Table, actual: pa.Table, catalogue_size: int, k: int = 10
) -> ServedScores:
    """Hit rate@k, nDCG@k, coverage and fallback share of the served lists against the period's ratings.

    ``lists`` (user_id, movie_id, rank) holds the personal lists, ``fallback`` (movie_id, rank) the cold-start
    list served to every other user, ``actual`` (user_id, movie_id, ...) the period's ratings: every one is
    relevant, and a movie rated twice by a user counts once. The evaluated users are the distinct users of
    ``actual``; with none, every metric is None.
    """
    if k < 1:
        raise BadInput(f"k must be >= 1, got {k}")
    if catalogue_size < 1:
        raise BadInput(f"catalogue_size must be >= 1, got {catalogue_size}")
    rated_by, rated = _ids(actual, "user_id", "actual ratings"), _ids(actual, "movie_id", "actual ratings")
    users = np.unique(rated_by)
    if len(users) == 0:
        return ServedScores(k=k, n_users=0, hit_rate=None, ndcg=None, coverage=None, fallback_share=None)
    recommended, on_fallback = served_lists(lists, fallback, users, k)
    # Every rating relevant: all-ones relevance with threshold 1. Each evaluated user has a relevant item, so
    # per_user_ndcg scores all of them; binary gains make nDCG > 0 exactly when the list holds a hit.
    _, ndcg = per_user_ndcg(users, recommended, rated_by, rated, np.ones(len(rated)), k=k, threshold=1.0)
    return ServedScores(
        k=k,
        n_users=len(users),
        hit_rate=float(np.mean(ndcg > 0)),
        ndcg=float(np.mean(ndcg)),
        coverage=catalog_coverage(recommended, catalogue_size),
        fallback_share=float(np.mean(on_fallback)),
    )


def score_ratings(predict: Predict, actual: pa.Table) -> RatingScores:
    """RMSE of ``predict`` on the period's ratings whose user and movie it knows, and the count of the others.

    ``predict`` is a rating model's predict (ALSModel.predict): (predictions, fallback mask). Every rating
    counts, a pair rated twice twice.
    """
    users, movies = _ids(actual, "user_id", "actual ratings"), _ids(actual, "movie_id", "actual ratings")
    if "rating" not in actual.column_names:
        raise BadInput("the actual ratings table has no rating column")
    truth = np.asarray(actual.column("rating").to_numpy(zero_copy_only=False), dtype=np.float64)
    if len(users) == 0:
        return RatingScores(rmse=None, n_known=0, n_unknown=0)
    predicted, fallback = predict(users, movies)
    known = ~np.asarray(fallback, dtype=bool)
    n_known = int(known.sum())
    score = rmse(truth[known], np.asarray(predicted)[known]) if n_known else None
    return RatingScores(rmse=score, n_known=n_known, n_unknown=int(len(users) - n_known))
