"""TMDB v3 HTTP client: a sliding-window rate limit shared by threads, retries with backoff, key kept secret."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from cinematch.core.errors import BadInput, CineMatchError
from cinematch.core.log import get_logger, log_event
from cinematch.core.secrets import redact, scrub
from cinematch.core.settings import Settings

log = get_logger(__name__)

APPEND = "credits,reviews"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# the server sees a request a little after the client sends it; this guard keeps its 1 s windows within the limit
WINDOW_GUARD_SECONDS = 0.05


class _RedactFilter(logging.Filter):
    """httpx logs every request URL at INFO, and a v3 key travels in the URL: redact it before any handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).addFilter(_RedactFilter())


class RateLimiter:
    """At most ``rate`` acquisitions in any sliding window of one second (plus a small guard), across threads."""

    def __init__(self, rate: float, guard: float = WINDOW_GUARD_SECONDS) -> None:
        if rate <= 0:
            raise BadInput(f"the TMDB rate limit must be > 0 requests/s, got {rate}")
        self.max_calls = max(1, int(rate))
        self.window = (1.0 if rate >= 1 else 1.0 / rate) + guard
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()
        self.stamps: list[float] = []  # every acquisition, for the measured max-per-second

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                while self._sent and now - self._sent[0] >= self.window:
                    self._sent.popleft()
                if len(self._sent) < self.max_calls:
                    self._sent.append(now)
                    self.stamps.append(now)
                    return
                wait = self._sent[0] + self.window - now
            time.sleep(max(wait, 0.001))


def max_in_window(stamps: list[float], window: float = 1.0) -> int:
    """The largest number of timestamps that fall in any half-open window of ``window`` seconds."""
    ordered = sorted(stamps)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


@dataclass
class FetchResult:
    """The outcome of fetching one movie: ``ok``, ``not_found``, ``malformed`` or ``failed``."""

    tmdb_id: int
    status: str
    http_status: int | None = None
    payload: str | None = None
    reason: str | None = None
    attempts: int = 0
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC).replace(tzinfo=None))


def validate_movie(tmdb_id: int, body: str) -> str | None:
    """Why ``body`` is not a usable /movie/{id} response (None when it is)."""
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as err:  # text that is not JSON
        return f"invalid JSON: {err.msg} at char {err.pos}"
    except ValueError as err:  # valid JSON that Python refuses, e.g. an integer over 4,300 digits
        return f"invalid JSON: {err}"
    if not isinstance(doc, dict):
        return f"expected a JSON object, got {type(doc).__name__}"
    if doc.get("id") != tmdb_id:
        return f"field id is {doc.get('id')!r}, expected {tmdb_id}"
    if not isinstance(doc.get("title"), str):
        return "missing required field title"
    for name in ("genres",):
        if name in doc and not isinstance(doc[name], list):
            return f"field {name} is not a list"
    for name in ("credits", "reviews"):
        if name in doc and not isinstance(doc[name], dict):
            return f"field {name} is not an object"
    reviews = (doc.get("reviews") or {}).get("results", [])
    if not isinstance(reviews, list) or any(
        not isinstance(r, dict) or not isinstance(r.get("id"), str) or not isinstance(r.get("content"), str)
        for r in reviews
    ):
        return "reviews.results entries need string id and content"
    return None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


def is_bearer_token(key: str) -> bool:
    """A v4 read access token is a JWT (three dot-separated parts); a v3 key is 32 hex characters."""
    return key.count(".") == 2 and len(key) > 40


class TmdbClient:
    """GET /movie/{id}?append_to_response=credits,reviews with the limit, retries and timeouts of ``settings``."""

    def __init__(self, settings: Settings, rate_limit: float | None = None, seed: int | None = None) -> None:
        if settings.tmdb_api_key is None or not settings.tmdb_api_key.get_secret_value().strip():
            raise BadInput("CINEMATCH_TMDB_API_KEY is not set: export your TMDB v3 API key (or v4 token) and rerun")
        key = settings.tmdb_api_key.get_secret_value().strip()
        self._key = key
        self.limiter = RateLimiter(rate_limit or settings.tmdb_rate_limit)
        self.max_attempts = settings.tmdb_max_attempts
        self.backoff = settings.tmdb_backoff_seconds
        self._rng = random.Random(settings.seed if seed is None else seed)
        self._rng_lock = threading.Lock()
        headers = {"Accept": "application/json"}
        self._params: dict[str, str] = {"append_to_response": APPEND}
        if is_bearer_token(key):
            headers["Authorization"] = f"Bearer {key}"
        else:
            self._params["api_key"] = key
        self._http = httpx.Client(
            base_url=settings.tmdb_base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(settings.tmdb_timeout_seconds),
            limits=httpx.Limits(max_connections=max(4, settings.tmdb_workers)),
        )
        self.requests = 0
        self.retries = 0
        self._count_lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TmdbClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        with self._rng_lock:
            jitter = self._rng.uniform(0.5, 1.0)
        backoff: float = min(30.0, self.backoff * 2 ** (attempt - 1)) * jitter
        return max(backoff, retry_after or 0.0)

    def fetch_movie(self, tmdb_id: int) -> FetchResult:
        """One movie with its credits and first page of reviews; retries 429/5xx/timeouts, then gives up."""
        path = f"/movie/{int(tmdb_id)}"
        reason, status = "no attempt", None
        for attempt in range(1, self.max_attempts + 1):
            self.limiter.acquire()
            with self._count_lock:
                self.requests += 1
            retry_after = None
            try:
                response = self._http.get(path, params=self._params)
            except httpx.TimeoutException as exc:
                reason, status = f"timeout ({type(exc).__name__})", None
            except httpx.TransportError as exc:
                reason, status = f"transport error ({type(exc).__name__})", None
            else:
                status = response.status_code
                if status == 200:
                    # an upstream (a proxy, a debugging mirror) may echo the request URL, key included: what is
                    # stored (bronze.tmdb_raw, the lake) is the body without it
                    body = scrub(response.text, [self._key])
                    problem = validate_movie(int(tmdb_id), body)
                    if problem:
                        return FetchResult(tmdb_id, "malformed", status, body, scrub(problem, [self._key]), attempt)
                    return FetchResult(tmdb_id, "ok", status, body, None, attempt)
                if status == 404:
                    return FetchResult(tmdb_id, "not_found", status, None, "TMDB has no movie with this id", attempt)
                if status == 401:
                    raise CineMatchError(
                        "TMDB rejected the API key (HTTP 401): check CINEMATCH_TMDB_API_KEY "
                        "(a v3 API key or a v4 read access token)"
                    )
                if status not in RETRY_STATUSES:
                    return FetchResult(tmdb_id, "failed", status, None, f"HTTP {status}", attempt)
                reason, retry_after = f"HTTP {status}", _retry_after(response)
            if attempt < self.max_attempts:
                delay = self._delay(attempt, retry_after)
                with self._count_lock:
                    self.retries += 1
                log_event(log, "tmdb_retry", tmdb_id=tmdb_id, attempt=attempt, reason=reason, sleep=round(delay, 3))
                time.sleep(delay)
        return FetchResult(tmdb_id, "failed", status, None, f"{reason} after {self.max_attempts} attempts",
                           self.max_attempts)  # fmt: skip
