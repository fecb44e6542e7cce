"""Seeded, vectorized generator of MovieLens-shaped ratings with weekly batches that drift."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from cinematch.core.log import get_logger, log_event
from cinematch.datasets.generate_config import GenerateConfig, batch_sizes, drift_schedule, iso, new_counts, parse_start
from cinematch.datasets.generate_entities import (
    DRIFT_GENRE_IDX,
    GENRES,
    RANK,
    Movies,
    Users,
    make_movies,
    make_users,
    rate,
)
from cinematch.datasets.generate_files import write_tables, write_viewing
from cinematch.datasets.taste import (
    Catalogue,
    capped_activity,
    catalogue,
    genre_component,
    sample_pairs,
    split_keys,
    taste_space,
)

logger = get_logger(__name__)

_MAX_USER_FRACTION = 0.35  # cap on a user's expected ratings as a share of the catalogue, so heavy users fit

_BASE_DAYS = 84  # base ratings span ~12 weeks
_WEEK_S = 7 * 86_400
_SIGNUP_HISTORY_DAYS = 730

RATINGS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("movie_id", pa.int64(), nullable=False),
        pa.field("rating", pa.float64(), nullable=False),
        pa.field("rated_at", pa.timestamp("us"), nullable=False),
    ]
)


def _ratings_table(user_id: np.ndarray, movie_id: np.ndarray, rating: np.ndarray, rated_us: np.ndarray) -> pa.Table:
    return pa.Table.from_arrays(
        [
            pa.array(user_id, type=pa.int64()),
            pa.array(movie_id, type=pa.int64()),
            pa.array(rating, type=pa.float64()),
            pa.array(rated_us.view("datetime64[us]"), type=pa.timestamp("us")),
        ],
        schema=RATINGS_SCHEMA,
    )


# --------------------------------------------------------------------------------------------- generation


@dataclass
class _Result:
    tables: dict[str, pa.Table]
    weeks: list[dict[str, Any]] = field(default_factory=list)
    base: dict[str, Any] = field(default_factory=dict)


def _generate(config: GenerateConfig, progress: Callable[[str], None] | None) -> _Result:
    config.validate()
    say = progress or (lambda _msg: None)
    start_us = parse_start(config.start)
    start_year = datetime.fromtimestamp(start_us / 1e6, tz=UTC).year
    base_end_us = start_us + _BASE_DAYS * 86_400 * 1_000_000
    schedule = drift_schedule(config)
    sizes = batch_sizes(config)
    new_users_per_week, new_movies_per_week = new_counts(config)

    # Child streams per part: the base never depends on the number of weeks, and a week only on earlier weeks.
    children = np.random.SeedSequence(config.seed).spawn(4 + config.weeks)
    rng_users, rng_movies, rng_base, rng_time = (np.random.default_rng(s) for s in children[:4])

    hist_us = _SIGNUP_HISTORY_DAYS * 86_400 * 1_000_000
    space = taste_space(rng_movies, len(GENRES), RANK, config.movies)  # directions shared by users and movies
    users = make_users(rng_users, 1, config.users, start_us - hist_us, start_us, space, config.taste)
    say(f"users {config.users}")
    movies = make_movies(rng_movies, 1, config.movies, 1950, max(1950, min(2024, start_year)), space)
    say(f"movies {config.movies}")

    # Base ratings, sorted by (user_id, movie_id) like MovieLens' ratings.csv.
    user_p = capped_activity(users.activity, config.ratings, config.movies, _MAX_USER_FRACTION)
    taste = (users.taste_comp, users.taste_weight)
    base_cat = catalogue(movies.member, movies.popularity)
    keys = sample_pairs(rng_base, config.ratings, users.ids, user_p, taste, movies.ids, base_cat, [])
    user_id, movie_id = split_keys(keys)
    u_idx = user_id - 1
    rating = rate(rng_base, u_idx, movie_id - 1, users, movies, 0.0, 0.0)
    # Each user is active in a window of the base period, so a user's ratings cluster in time as in MovieLens.
    period_s = _BASE_DAYS * 86_400
    window = np.maximum(3_600.0, period_s * rng_time.beta(0.6, 1.2, config.users))
    window_start = rng_time.random(config.users) * (period_s - window)
    offset = rng_time.random(keys.size)  # in-place arithmetic: 25M-row temporaries cost page faults
    offset *= np.take(window, u_idx)
    offset += np.take(window_start, u_idx)
    rated_us = offset.astype(np.int64)
    del offset, u_idx
    rated_us *= 1_000_000
    rated_us += start_us
    tables: dict[str, pa.Table] = {"ratings": _ratings_table(user_id, movie_id, rating, rated_us)}
    result = _Result(tables=tables)
    result.base = _observed(user_id, movie_id, rating, movies, config)
    say(f"ratings {keys.size}")
    log_event(logger, "generate_base", ratings=keys.size, users=config.users, movies=config.movies)
    del user_id, movie_id, rating, rated_us

    taken: list[np.ndarray] = [keys]  # every pair handed out so far, so no pair is ever rated twice
    all_users, all_movies = users, movies
    for spec, size, child in zip(schedule, sizes, children[4:], strict=True):
        week = spec["week"]
        rng = np.random.default_rng(child)
        week_lo = base_end_us + (week - 1) * _WEEK_S * 1_000_000
        week_hi = week_lo + _WEEK_S * 1_000_000
        if spec["strength"] > 0:
            # New arrivals this week; ids continue after everything created so far. Earlier arrivals stay.
            first_user, first_movie = all_users.ids.size + 1, all_movies.ids.size + 1
            signup_lo = week_lo - 3 * 86_400 * 1_000_000
            new_users = make_users(rng, first_user, new_users_per_week, signup_lo, week_lo, space, config.taste)
            all_users = all_users.extend(new_users)
            year = datetime.fromtimestamp(week_lo / 1e6, tz=UTC).year
            all_movies = all_movies.extend(make_movies(rng, first_movie, new_movies_per_week, year, year, space))
            spec["new_user_ids"] = [first_user, all_users.ids.size]
            spec["new_movie_ids"] = [first_movie, all_movies.ids.size]
        wkeys = _week_keys(rng, size, spec, config, all_users, all_movies, user_p, base_cat, taken)
        taken.append(wkeys)
        w_user, w_movie = split_keys(wkeys)
        w_rating = rate(
            rng, w_user - 1, w_movie - 1, all_users, all_movies, spec["latent_shift"], spec["low_rating_share"]
        )
        w_rated = week_lo + rng.integers(0, _WEEK_S, wkeys.size) * 1_000_000
        order = np.argsort(w_rated, kind="stable")  # a weekly batch arrives as an event log, in time order
        w_user, w_movie, w_rating, w_rated = w_user[order], w_movie[order], w_rating[order], w_rated[order]
        name = f"batch_w{week}"
        tables[name] = _ratings_table(w_user, w_movie, w_rating, w_rated)
        spec["rows"] = int(wkeys.size)
        spec["start"] = iso(week_lo)
        spec["end"] = iso(week_hi)
        spec["observed"] = _observed(w_user, w_movie, w_rating, all_movies, config)
        spec["observed"]["mean_drop"] = round(result.base["mean_rating"] - spec["observed"]["mean_rating"], 4)
        result.weeks.append(spec)
        say(f"{name} {wkeys.size}")
        log_event(logger, "generate_week", week=week, rows=wkeys.size, phase=spec["phase"], strength=spec["strength"])

    tables["movies"] = pa.table(
        {
            "movieId": pa.array(all_movies.ids, type=pa.int64()),
            "title": pa.array(all_movies.title.astype(object), type=pa.string()),
            "genres": pa.array(all_movies.genres.astype(object), type=pa.string()),
        }
    )
    tables["users"] = pa.table(
        {
            "user_id": pa.array(all_users.ids, type=pa.int64()),
            "signup_at": pa.array(all_users.signup_us.view("datetime64[us]"), type=pa.timestamp("us")),
            "country": pa.array(all_users.country.astype(object), type=pa.string()),
            "age_band": pa.array(all_users.age_band.astype(object), type=pa.string()),
        }
    )
    return result


def _week_keys(
    rng: np.random.Generator,
    size: int,
    spec: dict[str, Any],
    config: GenerateConfig,
    users: Users,
    movies: Movies,
    user_p: np.ndarray,
    base_cat: Catalogue,
    taken: list[np.ndarray],
) -> np.ndarray:
    """The week's sorted pair keys: new users and new movies get their scheduled shares of the rows.

    Each (old/new user) x (old/new movie) cell is sampled apart: pooled, new users and new movies would gain from
    never colliding with earlier ratings (users' favourite old movies are mostly rated already). A cell too small
    for its share (a few new users x a few new movies) passes the rest on to the next; old x old comes last.
    """
    n_new_users = users.ids.size - config.users
    user_groups = [(1.0 - spec["new_user_share"], np.concatenate([user_p, np.zeros(n_new_users)]))]
    if spec["new_user_share"] > 0:
        new_p = np.concatenate([np.zeros(config.users), users.activity[config.users :]])
        user_groups.append((spec["new_user_share"], new_p))
    # The drift genre's popularity is multiplied by `genre_boost`, for old and new movies alike, and so is every
    # user's taste weight for the genre (else the genre's own component would renormalise the boost away).
    pop = movies.popularity * np.where(movies.drift_genre, spec["genre_boost"], 1.0)
    old_cat = (
        base_cat if spec["genre_boost"] == 1.0 else catalogue(movies.member[: config.movies], pop[: config.movies])
    )
    movie_groups = [(1.0 - spec["new_movie_share"], old_cat)]
    if spec["new_movie_share"] > 0:
        new_cat = catalogue(movies.member[config.movies :], pop[config.movies :], first=config.movies)
        movie_groups.append((spec["new_movie_share"], new_cat))
    cells = [(u_share * m_share, p, cat) for u_share, p in user_groups for m_share, cat in movie_groups][::-1]
    bounds = np.round(np.cumsum([0.0] + [share for share, _, _ in cells]) * size).astype(np.int64)
    taste = (users.taste_comp, users.taste_weight)
    if spec["genre_boost"] != 1.0:
        boosted = np.where(taste[0] == genre_component(DRIFT_GENRE_IDX), spec["genre_boost"], 1.0) * taste[1]
        taste = (taste[0], boosted / boosted.sum(axis=1, keepdims=True))
    parts, carry = [], 0
    for i, (n, (_, p, cat)) in enumerate(zip(np.diff(bounds), cells, strict=True)):
        want = int(n) + carry
        last = i == len(cells) - 1
        keys = sample_pairs(rng, want, users.ids, p, taste, movies.ids, cat, taken, strict=last) if want else None
        if keys is not None:
            parts.append(keys)
            carry = want - keys.size
    return np.sort(np.concatenate(parts))


def _observed(
    user_id: np.ndarray, movie_id: np.ndarray, rating: np.ndarray, movies: Movies, config: GenerateConfig
) -> dict[str, Any]:
    n = max(rating.size, 1)
    return {
        "mean_rating": round(float(rating.mean()), 4) if rating.size else None,
        "new_user_share": round(float((user_id > config.users).sum() / n), 4),
        "new_movie_share": round(float((movie_id > config.movies).sum() / n), 4),
        "drift_genre_share": round(float(movies.drift_genre[movie_id - 1].sum() / n), 4),
    }


def generate_tables(config: GenerateConfig, progress: Callable[[str], None] | None = None) -> dict[str, pa.Table]:
    """Generate without writing: ``ratings``, ``movies``, ``users`` and ``batch_w1..wN`` as Arrow tables.

    ``movies`` uses MovieLens column names (movieId, title, genres) and includes the new drift movies.
    """
    return _generate(config, progress).tables


def generate_dataset(
    out_dir: Path, config: GenerateConfig, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Write ratings.parquet, movies.csv, users.parquet, batch_w1..wN.parquet, users.csv, sessions.csv, content.json.

    Returns a JSON-serializable summary: ``config``; ``files`` (name -> path, rows and for ratings files the
    rated_at range); ``base`` statistics; ``weeks`` with each week's drift parameters (see drift_schedule),
    its date range and the statistics actually observed; ``seconds``.
    """
    t0 = time.perf_counter()
    result = _generate(config, progress)
    t_gen = time.perf_counter() - t0
    files = write_tables(result.tables, Path(out_dir), progress)
    files.update(write_viewing(result.tables, Path(out_dir), config.seed))  # users.csv, sessions.csv, content.json
    seconds = time.perf_counter() - t0
    log_event(logger, "generate_dataset", out=str(out_dir), seconds=round(seconds, 3), generate_s=round(t_gen, 3))
    return {
        "out_dir": str(out_dir),
        "config": asdict(config),
        "files": files,
        "base": result.base,
        "weeks": result.weeks,
        "seconds": {"generate": round(t_gen, 3), "write": round(seconds - t_gen, 3), "total": round(seconds, 3)},
    }
