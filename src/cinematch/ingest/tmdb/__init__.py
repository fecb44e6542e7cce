"""TMDB enrichment source: a rate-limited, retrying v3 client and the resumable fetch into bronze.tmdb_raw."""

from cinematch.ingest.tmdb.client import FetchResult, RateLimiter, TmdbClient, max_in_window, validate_movie
from cinematch.ingest.tmdb.fetch import FetchPlan, TmdbFetch, default_links, fetch_tmdb, plan_fetch, read_links

__all__ = [
    "FetchPlan",
    "FetchResult",
    "RateLimiter",
    "TmdbClient",
    "TmdbFetch",
    "default_links",
    "fetch_tmdb",
    "max_in_window",
    "plan_fetch",
    "read_links",
    "validate_movie",
]
