"""A replay's data: the history cut into a base and one batch file per period, written once per replay id."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cinematch.core.log import get_logger, log_event
from cinematch.core.settings import Settings
from cinematch.datasets.periods import Every, Period, as_utc, split_periods
from cinematch.datasets.ratings import read_ratings
from cinematch.ingest.bronze import file_checksum
from cinematch.storage.files import atomic_write, atomic_write_text

log = get_logger(__name__)

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class PeriodFile:
    """A period's UTC bounds, its batch file (None when it holds no rating) and size."""

    bounds: Period
    path: Path | None
    n_ratings: int

    @property
    def number(self) -> int:
        """1-based, as the batch ids and the rows count periods."""
        return self.bounds.index + 1

    @property
    def start(self) -> datetime:
        return self.bounds.start

    @property
    def end(self) -> datetime:
        return self.bounds.end

    @property
    def batch_id(self) -> str:
        return f"period-{self.number:04d}"


@dataclass(frozen=True)
class ReplayPlan:
    """Everything a replay reads: its id and folder, the base and period files, and how they were made."""

    replay_id: str
    folder: Path
    ratings_file: Path
    movies_file: Path | None
    start: datetime
    every: Every
    base_path: Path
    n_base: int
    n_invalid: int
    periods: list[PeriodFile]

    def policy_home(self, dirname: str) -> Path:
        return self.folder / dirname


def replay_id(ratings: Path, movies: Path | None, start: datetime, every: Every) -> str:
    """The same history, start and period length always give the same id: a rerun continues that replay."""
    parts = [file_checksum(ratings), file_checksum(movies) if movies else "-", as_utc(start).isoformat(), str(every)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def _write(table: pa.Table, path: Path) -> None:
    """Write atomically: a kill leaves no half file under the final name."""
    atomic_write(path, lambda fh: pq.write_table(table, fh))


def _plan(folder: Path, doc: dict[str, Any], ratings: Path, movies: Path | None, every: Every) -> ReplayPlan:
    periods = [
        PeriodFile(Period(p["number"] - 1, datetime.fromisoformat(p["start"]), datetime.fromisoformat(p["end"])),
                   folder / "data" / p["file"] if p["file"] else None, p["n_ratings"])
        for p in doc["periods"]
    ]  # fmt: skip
    return ReplayPlan(doc["replay_id"], folder, ratings, movies, datetime.fromisoformat(doc["start"]), every,
                      folder / "data" / "base.parquet", doc["n_base"], doc["n_invalid"], periods)  # fmt: skip


def prepare(settings: Settings, ratings: Path, movies: Path | None, start: datetime, every: Every) -> ReplayPlan:
    """Read the history (any ratings format the readers accept), cut it and write the files, unless a run of the
    same replay already did (its manifest is written last, so a kill midway rewrites the files next time)."""
    rid = replay_id(ratings, movies, start, every)
    folder = settings.home_dir / "replays" / rid
    manifest = folder / "data" / MANIFEST
    if manifest.exists():
        return _plan(folder, json.loads(manifest.read_text()), ratings, movies, every)
    table, n_invalid = read_ratings(ratings)
    split = split_periods(table, start, every)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    _write(split.base, folder / "data" / "base.parquet")
    entries = []
    for period, rows in zip(split.bounds, split.periods, strict=True):
        number = period.index + 1
        name = f"period-{number:04d}.parquet" if rows.num_rows else None
        if name:
            _write(rows, folder / "data" / name)
        entries.append(_entry(period, number, name, rows.num_rows))
    doc = {"replay_id": rid, "ratings": str(ratings), "movies": str(movies) if movies else None,
           "start": as_utc(start).isoformat(), "every": str(every), "n_base": split.base.num_rows,
           "n_invalid": n_invalid, "periods": entries}  # fmt: skip
    atomic_write_text(manifest, json.dumps(doc, indent=1))
    log_event(log, "replay_prepared", replay_id=rid, base=split.base.num_rows, periods=len(entries),
              invalid=n_invalid)  # fmt: skip
    return _plan(folder, doc, ratings, movies, every)


def _entry(period: Period, number: int, name: str | None, n: int) -> dict[str, Any]:
    return {"number": number, "start": period.start.isoformat(), "end": period.end.isoformat(), "file": name,
            "n_ratings": n}  # fmt: skip


def read_period(period: PeriodFile) -> pa.Table:
    """The period's ratings (user_id, movie_id, rating, rated_at); an empty table for an empty period."""
    if period.path is None:
        return pa.table({"user_id": pa.array([], pa.int64()), "movie_id": pa.array([], pa.int64()),
                         "rating": pa.array([], pa.float64())})  # fmt: skip
    return pq.read_table(period.path, columns=["user_id", "movie_id", "rating"])
