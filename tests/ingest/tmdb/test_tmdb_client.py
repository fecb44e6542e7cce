"""The TMDB client against a local fake API: rate limit (measured server-side), retries, timeouts, bad bodies."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from tests.ingest.tmdb.fake_tmdb import KEY, MOVIES, FakeTmdb, max_in_window, movie

from cinematch.core.errors import BadInput, CineMatchError
from cinematch.ingest.tmdb import RateLimiter, TmdbClient, validate_movie


def test_rate_limit_holds_across_threads_measured_by_the_server(tmdb_settings) -> None:
    many = {i: movie(i, f"Movie {i}") for i in range(1, 15)}
    with FakeTmdb(many) as fake:
        settings = tmdb_settings(fake, tmdb_rate_limit=4.0)
        t0 = time.monotonic()
        with TmdbClient(settings) as client, ThreadPoolExecutor(6) as pool:
            results = list(pool.map(client.fetch_movie, many))
        elapsed = time.monotonic() - t0
    assert [r.status for r in results] == ["ok"] * 14
    assert max_in_window(fake.times()) <= 4  # never more than 4 in any 1 s window, by the server's clock
    assert max_in_window(client.limiter.stamps) <= 4
    # the limiter really throttled: 14 requests at 4 per window need at least 3 full windows
    assert elapsed >= 3.0
    assert max_in_window(fake.times(), window=1.2) >= 4  # and it did not run needlessly slowly


def test_limiter_counts_concurrent_acquisitions() -> None:
    limiter = RateLimiter(5, guard=0.0)
    threads = [threading.Thread(target=limiter.acquire) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(limiter.stamps) == 12 and max_in_window(limiter.stamps) <= 5


def test_retries_back_off_honour_retry_after_and_give_up(tmdb_settings) -> None:
    script = {862: ["429:1"], 8844: ["500", "500"], 11862: ["slow:1.5"], 5: ["500"] * 10}
    with FakeTmdb({**MOVIES, 5: movie(5, "Four Rooms")}, script) as fake:
        settings = tmdb_settings(fake, tmdb_backoff_seconds=0.2, tmdb_timeout_seconds=0.5, tmdb_max_attempts=3)
        with TmdbClient(settings) as client:
            limited = client.fetch_movie(862)
            errors = client.fetch_movie(8844)
            slow = client.fetch_movie(11862)
            broken = client.fetch_movie(5)
    assert (limited.status, limited.attempts) == ("ok", 2)
    t = fake.times(862)
    assert t[1] - t[0] >= 1.0  # Retry-After: 1 was honoured (the backoff alone would wait <= 0.2 s)
    assert (errors.status, errors.attempts) == ("ok", 3)
    t = fake.times(8844)
    first, second = t[1] - t[0], t[2] - t[1]
    assert 0.1 <= first <= 0.4 and 0.2 <= second <= 0.6  # 0.2 s then 0.4 s, times a jitter in [0.5, 1]
    assert (slow.status, slow.attempts) == ("ok", 2)  # the first answer came after the 0.5 s timeout
    assert broken.status == "failed" and broken.attempts == 3 and "HTTP 500 after 3 attempts" in broken.reason
    assert fake.counts()[5] == 3  # max attempts
    assert client.retries == 1 + 2 + 1 + 2


def test_not_found_and_malformed_bodies(tmdb_settings) -> None:
    with (
        FakeTmdb(MOVIES, {1: ["404"], 862: ["malformed"], 8844: ["badshape"]}) as fake,
        TmdbClient(tmdb_settings(fake)) as client,
    ):
        missing, broken, shapeless = (client.fetch_movie(i) for i in (1, 862, 8844))
    assert (missing.status, missing.attempts) == ("not_found", 1)
    assert broken.status == "malformed" and broken.reason.startswith("invalid JSON")
    assert shapeless.status == "malformed" and shapeless.reason == "missing required field title"
    assert fake.counts() == {1: 1, 862: 1, 8844: 1}  # bad bodies are not retried


def test_validate_movie() -> None:
    assert validate_movie(862, '{"id": 862, "title": "Toy Story"}') is None
    assert validate_movie(862, '{"id": 863, "title": "Toy Story"}') == "field id is 863, expected 862"
    assert validate_movie(862, "[]") == "expected a JSON object, got list"
    # a number Python will not convert is a bad body too, not a crash of the whole fetch
    huge = validate_movie(862, '{"id": ' + "9" * 5000 + ', "title": "T"}')
    assert huge is not None and huge.startswith("invalid JSON: Exceeds the limit (4300 digits)")
    bad_review = '{"id": 862, "title": "T", "reviews": {"results": [{"id": "r1"}]}}'
    assert validate_movie(862, bad_review) == "reviews.results entries need string id and content"


def test_key_unset_or_rejected(tmdb_settings) -> None:
    with FakeTmdb(MOVIES) as fake:
        with pytest.raises(BadInput, match="CINEMATCH_TMDB_API_KEY is not set"):
            TmdbClient(tmdb_settings(fake, tmdb_api_key=None))
        wrong = "ffffffffffffffffffffffffffffffff"
        with (
            TmdbClient(tmdb_settings(fake, tmdb_api_key=wrong)) as client,
            pytest.raises(CineMatchError, match="HTTP 401") as info,
        ):
            client.fetch_movie(862)
    assert wrong not in str(info.value)


def test_v4_token_goes_in_the_authorization_header(tmdb_settings) -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJjaW5lbWF0Y2gtdGVzdCIsInNjb3BlcyI6WyJhcGlfcmVhZCJdfQ.c2lnbmF0dXJl"
    with FakeTmdb(MOVIES, key=token) as fake, TmdbClient(tmdb_settings(fake, tmdb_api_key=token)) as client:
        assert client.fetch_movie(862).status == "ok"
    (_, _, path, headers) = fake.requests[0]
    assert "api_key" not in path and headers["Authorization"] == f"Bearer {token}"


def test_httpx_request_logs_are_redacted(tmdb_settings, caplog) -> None:
    caplog.set_level(logging.INFO, logger="httpx")
    with FakeTmdb(MOVIES) as fake, TmdbClient(tmdb_settings(fake)) as client:
        client.fetch_movie(862)
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert lines and all("api_key=***" in line and KEY not in line for line in lines)
