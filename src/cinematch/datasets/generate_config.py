"""What a generated dataset holds: its size and shape (GenerateConfig), weekly batch sizes, drift schedule, presets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from cinematch.core.errors import BadInput

DRIFT_GENRE = "Horror"

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


@dataclass
class GenerateConfig:
    """Size and shape of a generated dataset.

    ``batch_ratings`` None means: week 1 holds 0.6% of ``ratings`` (600 at the defaults, below the 1,000-record
    minimum of the drift detector, so it reports "insufficient data") and every later week 3% (3,000 at the
    defaults). An explicit ``batch_ratings`` gives every week that many ratings.

    ``taste`` scales the users' latent tastes (see datasets/taste.py): 1 (the default) makes which movies a user
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
        parse_start(self.start)
        total = self.ratings + sum(batch_sizes(self))
        capacity = int(_MAX_DENSITY * self.users * self.movies)
        if total > capacity:
            raise BadInput(
                f"{total} ratings do not fit {self.users} users x {self.movies} movies without duplicates "
                f"(at most {capacity}); raise --users/--movies or lower --ratings"
            )


def parse_start(start: str) -> int:
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


def new_counts(config: GenerateConfig) -> tuple[int, int]:
    return max(5, round(_NEW_USER_FRACTION * config.users)), max(3, round(_NEW_MOVIE_FRACTION * config.movies))


def drift_schedule(config: GenerateConfig) -> list[dict[str, Any]]:
    """The intended drift of every week: phase, strength in [0, 1] and the knobs derived from it.

    Weeks before ``drift_week`` are "baseline" (strength 0, the base distribution); ``drift_week`` is "early"
    (strength 0.5: mean drop ~0.3, enough for the drift check's warning level); strength then ramps linearly to 1.0 in the last week (mean drop ~0.6,
    30% of ratings by new users, 20% on new movies, Horror 8x as popular).
    """
    new_users, new_movies = new_counts(config)
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


def iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC).replace(tzinfo=None).isoformat()
