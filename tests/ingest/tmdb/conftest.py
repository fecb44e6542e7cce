"""TMDB test fixtures: a settings object pointed at the local fake TMDB, with a high rate limit by default."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.ingest.tmdb.fake_tmdb import KEY, FakeTmdb, write_inputs

from cinematch.core.settings import Settings


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    return write_inputs(tmp_path / "ml")


@pytest.fixture
def tmdb_settings(home: Settings) -> Callable[..., Settings]:
    """Settings for ``fake``: 50 requests/s (the rate-limit test sets 4), short backoff and timeout."""

    def make(fake: FakeTmdb, **overrides: object) -> Settings:
        values = {"home": home.home, "tmdb_api_key": KEY, "tmdb_base_url": fake.url, "tmdb_rate_limit": 50.0,
                  "tmdb_backoff_seconds": 0.05, "tmdb_timeout_seconds": 2.0, "tmdb_max_attempts": 4,
                  "tmdb_commit_every": 2, **overrides}  # fmt: skip
        return Settings(**values)  # type: ignore[arg-type]

    return make
