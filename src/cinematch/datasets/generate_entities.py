"""The users and movies of a generated dataset and their latent rating model (biases, factors, star scales)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cinematch.datasets.generate_config import DRIFT_GENRE
from cinematch.datasets.taste import CHUNK, TasteSpace, movie_components, movie_factors, user_tastes

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
DRIFT_GENRE_IDX = GENRES.index(DRIFT_GENRE)

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
# factors lean towards genre directions (datasets/taste.py), so users rate the genres they like higher; and users
# mostly pick movies close to their own tastes, which lifts the observed mean over MU, as self-selection does in
# MovieLens. The spreads reproduce the MovieLens histogram (mean ~3.5, mode 4.0, sd ~1.05) while leaving a rank-8
# signal strong enough for ALS to learn.
RANK = 8
_MU = 3.71
_USER_BIAS_SD = 0.45
_MOVIE_BIAS_SD = 0.30
_FACTOR_SD = (0.60 / math.sqrt(RANK)) ** 0.5
_NOISE_SD = 0.50
_POPULARITY_QUALITY = 0.02  # rating gain per unit of log popularity
_DISLIKE_SHARE = 0.10  # ratings pulled down 1-2.5 stars: MovieLens' heavy left tail of 0.5-2.5 ratings
_HALF_STAR_USERS = 0.60  # the rest rate in whole stars, which makes whole stars dominate as in MovieLens
_ZIPF_EXPONENT = 1.6  # see _MAINSTREAM_EXPONENT in datasets/taste.py
_ACTIVITY_SIGMA = 1.1


@dataclass
class Users:
    ids: np.ndarray
    bias: np.ndarray
    factors: np.ndarray  # (n, rank)
    half_star: np.ndarray
    activity: np.ndarray
    signup_us: np.ndarray
    country: np.ndarray
    age_band: np.ndarray
    taste_comp: np.ndarray  # (n, 16) int8 the heaviest choice components (datasets/taste.py), heaviest first
    taste_weight: np.ndarray  # (n, K) their weights

    def extend(self, other: Users) -> Users:
        return Users(*(np.concatenate([a, b]) for a, b in zip(self._arrays(), other._arrays(), strict=True)))

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(getattr(self, f) for f in self.__dataclass_fields__)


@dataclass
class Movies:
    ids: np.ndarray
    bias: np.ndarray
    factors: np.ndarray
    popularity: np.ndarray
    drift_genre: np.ndarray
    title: np.ndarray
    genres: np.ndarray
    member: np.ndarray  # (n, K) membership of the choice components

    def extend(self, other: Movies) -> Movies:
        return Movies(*(np.concatenate([a, b]) for a, b in zip(self._arrays(), other._arrays(), strict=True)))

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(getattr(self, f) for f in self.__dataclass_fields__)


def make_users(
    rng: np.random.Generator, first_id: int, n: int, signup_lo: int, signup_hi: int, space: TasteSpace, taste: float
) -> Users:
    bias = rng.normal(0.0, _USER_BIAS_SD, n)
    # float32 factors halve the gather traffic of rate()
    tastes = user_tastes(rng, n, space, _GENRE_WEIGHTS / _GENRE_WEIGHTS.sum(), _FACTOR_SD, taste)
    return Users(
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


def make_movies(
    rng: np.random.Generator, first_id: int, n: int, year_lo: int, year_hi: int, space: TasteSpace
) -> Movies:
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
    factors = movie_factors(rng, member, space, _FACTOR_SD)  # float32 halves the gather traffic of rate()
    return Movies(
        ids=np.arange(first_id, first_id + n, dtype=np.int64),
        bias=bias,
        factors=factors,
        popularity=popularity,
        drift_genre=member[:, DRIFT_GENRE_IDX],
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
    drawn: np.ndarray = np.minimum(idx, cdf.size - 1)
    return drawn


def rate(
    rng: np.random.Generator,
    u_idx: np.ndarray,
    m_idx: np.ndarray,
    users: Users,
    movies: Movies,
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
