"""Seeded, vectorized generator of MovieLens-shaped ratings with weekly batches that drift."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cinematch.core.errors import BadInput
from cinematch.core.log import get_logger, log_event
from cinematch.datasets.generate_files import write_viewing
from cinematch.datasets.taste import (
    CHUNK,
    Catalogue,
    TasteSpace,
    capped_activity,
    catalogue,
    genre_component,
    movie_components,
    movie_factors,
    sample_pairs,
    split_keys,
    taste_space,
    user_tastes,
)

logger = get_logger(__name__)

GENRES: tuple[str, ...] = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
# Relative genre frequencies of the MovieLens 25M catalogue, so Drama/Comedy dominate as in the real data.
_GENRE_WEIGHTS = np.array(
    [7348, 4145, 2929, 2935, 16870, 5319, 5605, 25606, 2731, 353, 5989, 1054, 2925, 7719, 3595, 8654, 1874, 1399],
    dtype=np.float64,
)
# Genre effect on a movie's mean rating (Film-Noir and documentaries rate high, horror low, as in MovieLens).
_GENRE_EFFECT = np.array(
    [-0.10, 0.0, 0.10, -0.15, -0.10, 0.10, 0.30, 0.15, 0.0, 0.35, -0.30, 0.05, 0.10, 0.0, -0.05, -0.05, 0.25, 0.05]
)
DRIFT_GENRE = "Horror"
_DRIFT_GENRE_IDX = GENRES.index(DRIFT_GENRE)

_ADJECTIVES = np.array([
    "Silent", "Last", "Broken", "Golden", "Hidden", "Dark", "Wild", "Lost", "Eternal", "Crimson", "Frozen",
    "Secret", "Midnight", "Burning", "Little", "Electric", "Savage", "Quiet", "Distant", "Fallen", "Hollow",
    "Iron", "Velvet", "Wicked", "Scarlet", "Endless", "Bitter", "Lonely",
])  # fmt: skip
_NOUNS = np.array([
    "Heat", "Wave", "River", "Empire", "Storm", "Garden", "Shadow", "City", "Promise", "Dream", "Night",
    "Harbor", "Kingdom", "Mirror", "Road", "Summer", "Winter", "Game", "Heart", "Voyage", "Signal", "Horizon",
    "Machine", "Witness", "Island", "Protocol", "Letter", "Echo", "Fire", "Stranger",
])  # fmt: skip
_COUNTRIES = np.array(["US", "GB", "DE", "FR", "CA", "IN", "BR", "ES", "JP", "AU", "NL"])
_COUNTRY_WEIGHTS = np.array([35, 10, 8, 7, 6, 8, 7, 5, 5, 4, 5], dtype=np.float64)
_AGE_BANDS = np.array(["<18", "18-24", "25-34", "35-44", "45-54", "55+"])
_AGE_WEIGHTS = np.array([4, 22, 35, 20, 11, 8], dtype=np.float64)

# Latent model: rating = MU + user bias + movie bias + <p_u, q_m> + noise, rounded to the user's star scale. The
# factors lean towards genre directions (datasets/_taste.py), so users rate the genres they like higher; and users
# mostly pick movies close to their own tastes, which lifts the observed mean over MU, as self-selection does in
# MovieLens. The spreads reproduce the MovieLens histogram (mean ~3.5, mode 4.0, sd ~1.05) while leaving a rank-8
# signal strong enough for ALS to learn.
_RANK = 8
_MU = 3.71
_USER_BIAS_SD = 0.45
_MOVIE_BIAS_SD = 0.30
_FACTOR_SD = (0.60 / math.sqrt(_RANK)) ** 0.5
_NOISE_SD = 0.50
_POPULARITY_QUALITY = 0.02  # rating gain per unit of log popularity
_DISLIKE_SHARE = 0.10  # ratings pulled down 1-2.5 stars: MovieLens' heavy left tail of 0.5-2.5 ratings
_HALF_STAR_USERS = 0.60  # the rest rate in whole stars, which makes whole stars dominate as in MovieLens
_ZIPF_EXPONENT = 1.6  # see _MAINSTREAM_EXPONENT in datasets/_taste.py
_ACTIVITY_SIGMA = 1.1
_MAX_USER_FRACTION = 0.35  # cap on a user's expected ratings as a share of the catalogue, so heavy users fit

_BASE_DAYS = 84  # base ratings span ~12 weeks
_WEEK_S = 7 * 86_400
_SIGNUP_HISTORY_DAYS = 730
_FIRST_WEEK_FRACTION = 0.006  # week 1 stays below the drift detector's 1,000-record minimum at the defaults
_LATER_WEEK_FRACTION = 0.03
_MAX_DENSITY = 0.25  # refuse configs whose ratings would fill more than this share of the user x movie matrix

# Drift at full strength; week `drift_week` runs at _EARLY_STRENGTH and the ramp reaches 1.0 in the last week.
_EARLY_STRENGTH = 0.5
_FULL_MEAN_DROP = 0.6  # intended drop of the mean rating at full strength (0.3 in the early week)
_FULL_LATENT_SHIFT = 0.60
_FULL_LOW_SHARE = 0.07  # extra share of "hate" ratings (0.5-2.0 stars) at full strength
_FULL_NEW_USER_SHARE = 0.30
_FULL_NEW_MOVIE_SHARE = 0.20
_FULL_GENRE_BOOST = 8.0  # popularity multiplier of DRIFT_GENRE at full strength
_NEW_USER_FRACTION = 0.02  # new users per drift week, as a share of the base users
_NEW_MOVIE_FRACTION = 0.01

RATINGS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("movie_id", pa.int64(), nullable=False),
        pa.field("rating", pa.float64(), nullable=False),
        pa.field("rated_at", pa.timestamp("us"), nullable=False),
    ]
)


@dataclass
class GenerateConfig:
    """Size and shape of a generated dataset.

    ``batch_ratings`` None means: week 1 holds 0.6% of ``ratings`` (600 at the defaults, below the 1,000-record
    minimum of the drift detector, so it reports "insufficient data") and every later week 3% (3,000 at the
    defaults). An explicit ``batch_ratings`` gives every week that many ratings.

    ``taste`` scales the users' latent tastes (see datasets/_taste.py): 1 (the default) makes which movies a user
    rates, and a little how they rate them, depend on genre and latent-factor preferences; 0 makes users pick
    by popularity alone, with no personal signal for a ranking model to find (and, without the self-selection of
    liked movies, ratings average ~0.1 lower).
    """

    users: int = 2_000
    movies: int = 1_500
    ratings: int = 100_000
    weeks: int = 3
    batch_ratings: int | None = None
    drift_week: int = 2
    seed: int = 42
    start: str = "2024-01-01"
    taste: float = 1.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise BadInput naming the first unusable option."""
        for name in ("users", "movies", "ratings"):
            if getattr(self, name) < 1:
                raise BadInput(f"--{name} must be at least 1 (got {getattr(self, name)})")
        if self.weeks < 0:
            raise BadInput(f"--weeks must be 0 or more (got {self.weeks})")
        if self.batch_ratings is not None and self.batch_ratings < 1:
            raise BadInput(f"--batch-ratings must be at least 1 (got {self.batch_ratings})")
        if self.drift_week < 1:
            raise BadInput(
                f"--drift-week must be 1 or more (got {self.drift_week}); use a value above --weeks for no drift"
            )
        if self.seed < 0:
            raise BadInput(f"--seed must be 0 or more (got {self.seed})")
        if not 0.0 <= self.taste <= 1.0:
            raise BadInput(f"taste must be between 0 and 1 (got {self.taste})")
        _parse_start(self.start)
        total = self.ratings + sum(batch_sizes(self))
        capacity = int(_MAX_DENSITY * self.users * self.movies)
        if total > capacity:
            raise BadInput(
                f"{total} ratings do not fit {self.users} users x {self.movies} movies without duplicates "
                f"(at most {capacity}); raise --users/--movies or lower --ratings"
            )


def _parse_start(start: str) -> int:
    """Return ``start`` as microseconds since the epoch, UTC (naive means UTC; aware is converted)."""
    try:
        parsed = datetime.fromisoformat(start)
    except ValueError as exc:
        raise BadInput(f"start {start!r} is not an ISO date such as 2024-01-01") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return round(parsed.timestamp() * 1_000_000)


def batch_sizes(config: GenerateConfig) -> list[int]:
    """Ratings per weekly batch (see GenerateConfig for the default rule)."""
    if config.batch_ratings is not None:
        return [config.batch_ratings] * config.weeks
    first = max(1, round(_FIRST_WEEK_FRACTION * config.ratings))
    later = max(1, round(_LATER_WEEK_FRACTION * config.ratings))
    return [first if week == 1 else later for week in range(1, config.weeks + 1)]


def _new_counts(config: GenerateConfig) -> tuple[int, int]:
    return max(5, round(_NEW_USER_FRACTION * config.users)), max(3, round(_NEW_MOVIE_FRACTION * config.movies))


def drift_schedule(config: GenerateConfig) -> list[dict[str, Any]]:
    """The intended drift of every week: phase, strength in [0, 1] and the knobs derived from it.

    Weeks before ``drift_week`` are "baseline" (strength 0, the base distribution); ``drift_week`` is "early"
    (strength 0.5: mean drop ~0.3, enough for the drift check's warning level); strength then ramps linearly to 1.0 in the last week (mean drop ~0.6,
    30% of ratings by new users, 20% on new movies, Horror 8x as popular).
    """
    new_users, new_movies = _new_counts(config)
    ramp = max(1, config.weeks - config.drift_week)
    out = []
    for week in range(1, config.weeks + 1):
        if week < config.drift_week:
            phase, strength = "baseline", 0.0
        else:
            phase = "early" if week == config.drift_week else "drift"
            strength = min(1.0, _EARLY_STRENGTH + (1 - _EARLY_STRENGTH) * (week - config.drift_week) / ramp)
        drifting = strength > 0
        out.append(
            {
                "week": week,
                "phase": phase,
                "strength": round(strength, 4),
                "target_mean_drop": round(_FULL_MEAN_DROP * strength, 4),
                "latent_shift": round(_FULL_LATENT_SHIFT * strength, 4),
                "low_rating_share": round(_FULL_LOW_SHARE * strength, 4),
                "new_user_share": round(_FULL_NEW_USER_SHARE * strength, 4),
                "new_movie_share": round(_FULL_NEW_MOVIE_SHARE * strength, 4),
                "drift_genre": DRIFT_GENRE,
                "genre_boost": round(1 + (_FULL_GENRE_BOOST - 1) * strength, 4),
                "new_users": new_users if drifting else 0,
                "new_movies": new_movies if drifting else 0,
            }
        )
    return out


def scale_config(scale: Literal["small", "medium", "large"], seed: int = 42) -> GenerateConfig:
    """Preset sizes: small = the defaults (100k), medium ~ MovieLens 1M, large ~ MovieLens 25M."""
    sizes = {
        "small": (2_000, 1_500, 100_000),
        "medium": (10_000, 6_000, 1_000_000),
        "large": (162_000, 62_000, 25_000_000),
    }
    if scale not in sizes:
        raise BadInput(f"scale must be one of {', '.join(sizes)} (got {scale!r})")
    users, movies, ratings = sizes[scale]
    return GenerateConfig(users=users, movies=movies, ratings=ratings, seed=seed)


# --------------------------------------------------------------------------------------------- entities


@dataclass
class _Users:
    ids: np.ndarray
    bias: np.ndarray
    factors: np.ndarray  # (n, rank)
    half_star: np.ndarray
    activity: np.ndarray
    signup_us: np.ndarray
    country: np.ndarray
    age_band: np.ndarray
    taste_comp: np.ndarray  # (n, 16) int8 the heaviest choice components (datasets/_taste.py), heaviest first
    taste_weight: np.ndarray  # (n, K) their weights

    def extend(self, other: _Users) -> _Users:
        return _Users(*(np.concatenate([a, b]) for a, b in zip(self._arrays(), other._arrays(), strict=True)))

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(getattr(self, f) for f in self.__dataclass_fields__)


@dataclass
class _Movies:
    ids: np.ndarray
    bias: np.ndarray
    factors: np.ndarray
    popularity: np.ndarray
    drift_genre: np.ndarray
    title: np.ndarray
    genres: np.ndarray
    member: np.ndarray  # (n, K) membership of the choice components

    def extend(self, other: _Movies) -> _Movies:
        return _Movies(*(np.concatenate([a, b]) for a, b in zip(self._arrays(), other._arrays(), strict=True)))

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(getattr(self, f) for f in self.__dataclass_fields__)


def _make_users(
    rng: np.random.Generator, first_id: int, n: int, signup_lo: int, signup_hi: int, space: TasteSpace, taste: float
) -> _Users:
    bias = rng.normal(0.0, _USER_BIAS_SD, n)
    # float32 factors halve the gather traffic of _rate
    tastes = user_tastes(rng, n, space, _GENRE_WEIGHTS / _GENRE_WEIGHTS.sum(), _FACTOR_SD, taste)
    return _Users(
        ids=np.arange(first_id, first_id + n, dtype=np.int64),
        bias=bias,
        factors=tastes.factors,
        half_star=rng.random(n) < _HALF_STAR_USERS,
        activity=rng.lognormal(0.0, _ACTIVITY_SIGMA, n),
        signup_us=(rng.integers(signup_lo // 1_000_000, signup_hi // 1_000_000, n) * 1_000_000).astype(np.int64),
        country=_COUNTRIES[_draw(rng, np.cumsum(_COUNTRY_WEIGHTS), n)],
        age_band=_AGE_BANDS[_draw(rng, np.cumsum(_AGE_WEIGHTS), n)],
        taste_comp=tastes.comp,
        taste_weight=tastes.weight,
    )


def _make_movies(
    rng: np.random.Generator, first_id: int, n: int, year_lo: int, year_hi: int, space: TasteSpace
) -> _Movies:
    # Zipf popularity over a random ranking, so ids carry no popularity order.
    popularity = 1.0 / rng.permutation(np.arange(1, n + 1, dtype=np.float64)) ** _ZIPF_EXPONENT
    # 1-3 distinct genres per movie: Gumbel top-k sampling by catalogue frequency, vectorized over movies.
    n_genres = 1 + _draw(rng, np.cumsum([0.40, 0.35, 0.25]), n)
    gumbel = np.log(_GENRE_WEIGHTS) - np.log(-np.log(rng.random((n, len(GENRES)))))
    ranked = np.argsort(-gumbel, axis=1)[:, :3]
    member = np.zeros((n, len(GENRES)), dtype=bool)
    rows = np.arange(n)[:, None]
    member[rows, ranked] = np.arange(3)[None, :] < n_genres[:, None]
    # Popular movies rate a little higher (as in MovieLens), plus the genres' mean effect. The popularity term
    # is centred on the popularity-weighted mean so it does not move the overall mean rating.
    log_pop = np.log(popularity)
    pop_term = log_pop - np.average(log_pop, weights=popularity)
    bias = rng.normal(0.0, _MOVIE_BIAS_SD, n) + _POPULARITY_QUALITY * pop_term + (member @ _GENRE_EFFECT) / n_genres
    # Release years skew recent: a Beta(2.6, 1.1) over the year range.
    years = year_lo + np.floor((year_hi - year_lo + 1) * rng.beta(2.6, 1.1, n)).astype(np.int64)
    factors = movie_factors(rng, member, space, _FACTOR_SD)  # float32 halves the gather traffic of _rate
    return _Movies(
        ids=np.arange(first_id, first_id + n, dtype=np.int64),
        bias=bias,
        factors=factors,
        popularity=popularity,
        drift_genre=member[:, _DRIFT_GENRE_IDX],
        title=_titles(rng, np.minimum(years, year_hi)),
        genres=_join_genres(member),
        member=movie_components(rng, member, factors, space),
    )


def _titles(rng: np.random.Generator, years: np.ndarray) -> np.ndarray:
    """MovieLens-style titles such as ``Heat Wave (1995)`` or ``Silent River, The (1972)``."""
    n = years.size
    adj = _ADJECTIVES[rng.integers(0, _ADJECTIVES.size, n)]
    noun1 = _NOUNS[rng.integers(0, _NOUNS.size, n)]
    noun2 = _NOUNS[rng.integers(0, _NOUNS.size, n)]
    sequel = rng.integers(2, 5, n).astype(str)
    add = np.strings.add
    patterns = [
        add(add(adj, " "), noun1),
        add(add(noun1, " "), noun2),
        add(add(add(adj, " "), noun1), ", The"),  # MovieLens moves the article behind a comma
        add(add(noun1, " of the "), noun2),
        add(add(add(add(adj, " "), noun1), " "), sequel),
        add(add(add(add(noun1, ", "), noun2), " and "), _NOUNS[rng.integers(0, _NOUNS.size, n)]),
    ]
    choice = _draw(rng, np.cumsum([0.30, 0.20, 0.15, 0.15, 0.10, 0.10]), n)
    base = np.choose(choice, patterns)
    return add(add(add(base, " ("), years.astype(str)), ")")


def _join_genres(member: np.ndarray) -> np.ndarray:
    out = np.full(member.shape[0], "", dtype=f"<U{sum(len(g) + 1 for g in GENRES)}")
    for g, name in enumerate(GENRES):
        col = member[:, g]
        out[col] = np.where(out[col] == "", name, np.strings.add(out[col], "|" + name))
    return out


# --------------------------------------------------------------------------------------------- sampling


def _draw(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    """``n`` indices drawn with probabilities proportional to the increments of ``cdf``."""
    idx = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    return np.minimum(idx, cdf.size - 1)


def _rate(
    rng: np.random.Generator,
    u_idx: np.ndarray,
    m_idx: np.ndarray,
    users: _Users,
    movies: _Movies,
    latent_shift: float,
    low_share: float,
) -> np.ndarray:
    """Ratings from the latent model, in chunks so 25M rows never materialise (n, rank) factor copies."""
    out = np.empty(u_idx.size, dtype=np.float64)
    for lo in range(0, u_idx.size, CHUNK):
        u = u_idx[lo : lo + CHUNK]
        m = m_idx[lo : lo + CHUNK]
        # np.take on axis 0 gathers whole factor rows and is several times faster than fancy indexing here.
        x = np.einsum("ij,ij->i", np.take(users.factors, u, axis=0), np.take(movies.factors, m, axis=0))
        x += _MU - latent_shift
        x += np.take(users.bias, u)
        x += np.take(movies.bias, m)
        x += _NOISE_SD * rng.standard_normal(u.size)
        dislike = rng.random(u.size) < _DISLIKE_SHARE
        x[dislike] -= rng.uniform(1.0, 2.5, int(dislike.sum()))
        if low_share > 0:
            low = rng.random(u.size) < low_share
            x[low] = rng.uniform(0.3, 2.2, int(low.sum()))
        half = np.take(users.half_star, u)
        stars = np.where(half, np.round(x * 2) / 2, np.round(x))
        out[lo : lo + CHUNK] = np.clip(stars, np.where(half, 0.5, 1.0), 5.0)
    return out


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


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC).replace(tzinfo=None).isoformat()


# --------------------------------------------------------------------------------------------- generation


@dataclass
class _Result:
    tables: dict[str, pa.Table]
    weeks: list[dict[str, Any]] = field(default_factory=list)
    base: dict[str, Any] = field(default_factory=dict)


def _generate(config: GenerateConfig, progress: Callable[[str], None] | None) -> _Result:
    config.validate()
    say = progress or (lambda _msg: None)
    start_us = _parse_start(config.start)
    start_year = datetime.fromtimestamp(start_us / 1e6, tz=UTC).year
    base_end_us = start_us + _BASE_DAYS * 86_400 * 1_000_000
    schedule = drift_schedule(config)
    sizes = batch_sizes(config)
    new_users_per_week, new_movies_per_week = _new_counts(config)

    # Child streams per part: the base never depends on the number of weeks, and a week only on earlier weeks.
    children = np.random.SeedSequence(config.seed).spawn(4 + config.weeks)
    rng_users, rng_movies, rng_base, rng_time = (np.random.default_rng(s) for s in children[:4])

    hist_us = _SIGNUP_HISTORY_DAYS * 86_400 * 1_000_000
    space = taste_space(rng_movies, len(GENRES), _RANK, config.movies)  # directions shared by users and movies
    users = _make_users(rng_users, 1, config.users, start_us - hist_us, start_us, space, config.taste)
    say(f"users {config.users}")
    movies = _make_movies(rng_movies, 1, config.movies, 1950, max(1950, min(2024, start_year)), space)
    say(f"movies {config.movies}")

    # Base ratings, sorted by (user_id, movie_id) like MovieLens' ratings.csv.
    user_p = capped_activity(users.activity, config.ratings, config.movies, _MAX_USER_FRACTION)
    taste = (users.taste_comp, users.taste_weight)
    base_cat = catalogue(movies.member, movies.popularity)
    keys = sample_pairs(rng_base, config.ratings, users.ids, user_p, taste, movies.ids, base_cat, [])
    user_id, movie_id = split_keys(keys)
    u_idx = user_id - 1
    rating = _rate(rng_base, u_idx, movie_id - 1, users, movies, 0.0, 0.0)
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
            new_users = _make_users(rng, first_user, new_users_per_week, signup_lo, week_lo, space, config.taste)
            all_users = all_users.extend(new_users)
            year = datetime.fromtimestamp(week_lo / 1e6, tz=UTC).year
            all_movies = all_movies.extend(_make_movies(rng, first_movie, new_movies_per_week, year, year, space))
            spec["new_user_ids"] = [first_user, all_users.ids.size]
            spec["new_movie_ids"] = [first_movie, all_movies.ids.size]
        wkeys = _week_keys(rng, size, spec, config, all_users, all_movies, user_p, base_cat, taken)
        taken.append(wkeys)
        w_user, w_movie = split_keys(wkeys)
        w_rating = _rate(
            rng, w_user - 1, w_movie - 1, all_users, all_movies, spec["latent_shift"], spec["low_rating_share"]
        )
        w_rated = week_lo + rng.integers(0, _WEEK_S, wkeys.size) * 1_000_000
        order = np.argsort(w_rated, kind="stable")  # a weekly batch arrives as an event log, in time order
        w_user, w_movie, w_rating, w_rated = w_user[order], w_movie[order], w_rating[order], w_rated[order]
        name = f"batch_w{week}"
        tables[name] = _ratings_table(w_user, w_movie, w_rating, w_rated)
        spec["rows"] = int(wkeys.size)
        spec["start"] = _iso(week_lo)
        spec["end"] = _iso(week_hi)
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
    users: _Users,
    movies: _Movies,
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
        boosted = np.where(taste[0] == genre_component(_DRIFT_GENRE_IDX), spec["genre_boost"], 1.0) * taste[1]
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
    user_id: np.ndarray, movie_id: np.ndarray, rating: np.ndarray, movies: _Movies, config: GenerateConfig
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


def write_movies_csv(table: pa.Table, path: Path) -> None:
    """MovieLens movies.csv: bare header, titles quoted only when they contain a comma or quote."""
    table.to_pandas().to_csv(path, index=False, lineterminator="\n")


def write_tables(
    tables: dict[str, pa.Table], out_dir: Path, progress: Callable[[str], None] | None = None
) -> dict[str, dict[str, Any]]:
    """Write ``movies`` as movies.csv and every other table as ``<name>.parquet`` (zstd); describe each file.

    Each file is written under a temporary name and renamed, so a reader never sees a half-written file.
    """
    say = progress or (lambda _msg: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    for name, table in tables.items():
        path = out_dir / (f"{name}.csv" if name == "movies" else f"{name}.parquet")
        tmp = path.with_name(f".{path.name}.tmp")
        say(f"write {path.name}")
        if name == "movies":
            write_movies_csv(table, tmp)
        else:
            pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
        info: dict[str, Any] = {"path": str(path), "rows": table.num_rows}
        if "rated_at" in table.column_names and table.num_rows:
            col = table.column("rated_at").to_numpy().view(np.int64)
            info["min_rated_at"], info["max_rated_at"] = _iso(int(col.min())), _iso(int(col.max()))
        files[name] = info
    return files


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
