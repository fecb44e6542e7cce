"""Fits shared by the policies of one replay: the same training rows and settings give the same models once.

A replay plays several policies over one history, and their retrains often train on exactly the same rows:
always-retrain and a fixed cadence meet every N periods, and a worker with no policy left fits ahead for a
policy still playing (pipelines/replay_prefetch.py). ``CachedTrainer`` wraps a trainer and keeps each fit in a
folder under a key that is a SHA-256 of everything the fit reads: the training rows in a canonical order
(user, movie, time, rating), the parameters, the ranking choice and configuration, the engine and CineMatch's
version. A hit is therefore the model the fit would have given, bit for bit: rows are also sorted into that
order before fitting, so a fit never depends on the order in which a warehouse returned them.

Each entry records the seconds its fit took. A policy that reuses a fit is charged those seconds instead of
the load (``charged_seconds``), so the replay's compute comparison between policies stays honest. A search
(tuning) is not cached: a replay tunes once, on the base. Nor is a warm-started refit (from
``warm_start_min_ratings`` training ratings, recommender/training.py): it starts from the policy's own champion, so
another policy could reuse it only with the same champion, and keying it would sort and hash 17M+ rows (6 s at the
25M replay's size) for a fit that takes about 20 s.

A worker fitting ahead claims the rows it is fitting (``claim``: a file naming its process); a trainer that
needs a fit of claimed rows waits for that fit instead of making it a second time, and is not charged the wait.
A claim whose process is gone (a killed replay) is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from cinematch import __version__
from cinematch.core.log import get_logger, log_event
from cinematch.recommender.als import ALSModel
from cinematch.recommender.als_params import ALSParams
from cinematch.recommender.ranker import Ranker
from cinematch.recommender.trainer import Trainer
from cinematch.recommender.tuning import Choice, RankingConfig, Selection
from cinematch.storage.lock import process_alive

log = get_logger(__name__)

ENTRY = "fit.json"  # written last: an entry without it is incomplete (a killed writer) and is not read
_KEY_COLUMNS = ("user_id", "movie_id", "rated_at", "rating")
CLAIM = "claim-"  # + the rows' digest: a process is fitting these rows (its pid inside)
_POLL_SECONDS = 0.05
_MAX_WAIT_SECONDS = 3600.0


def canonical(table: pa.Table) -> pa.Table:
    """The rows sorted by user, movie, time and rating: the order every cached fit sees."""
    return table.sort_by([(name, "ascending") for name in _KEY_COLUMNS])


def rows_digest(table: pa.Table) -> str:
    """SHA-256 of a canonical table's key columns (values and order), as hex."""
    digest = hashlib.sha256()
    for name in _KEY_COLUMNS:
        column = table.column(name)
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.timestamp("us")).cast(pa.int64())
        values = np.ascontiguousarray(column.to_numpy(zero_copy_only=False))
        digest.update(name.encode() + str(values.dtype).encode() + values.tobytes())
    return digest.hexdigest()


class CachedTrainer:
    """A trainer whose fits are kept in ``folder`` and reused by key; see the module docstring."""

    def __init__(self, inner: Trainer, folder: Path) -> None:
        self.inner = inner
        self.folder = Path(folder)
        self.hits = 0
        self.fit_seconds_reused = 0.0  # what the reused fits took when they were made
        self.load_seconds = 0.0  # what loading them took here
        self.waited_seconds = 0.0  # waiting for another process's claimed fit (idle: never charged)
        self._rows: tuple[pa.Table, pa.Table, str] | None = None  # (table given, canonical table, its digest)

    @property
    def engine(self) -> str:
        return self.inner.engine

    @property
    def charged_seconds(self) -> float:
        """Seconds to add to a measured wall time so that reused fits cost what fitting them did."""
        return max(0.0, self.fit_seconds_reused - self.load_seconds - self.waited_seconds)

    def _canonical(self, table: pa.Table) -> tuple[pa.Table, str]:
        """The canonical rows and their digest; a training passes one table to both fits: sorted and hashed once."""
        if self._rows is None or self._rows[0] is not table:
            rows = canonical(table)
            self._rows = (table, rows, rows_digest(rows))
        return self._rows[1], self._rows[2]

    def _claim_path(self, digest: str) -> Path:
        return self.folder / f"{CLAIM}{digest[:40]}"

    @contextmanager
    def claim(self, table: pa.Table) -> Iterator[None]:
        """While the block runs, other trainers that need fits of these rows wait for them (module docstring)."""
        _, digest = self._canonical(table)
        path = self._claim_path(digest)
        self.folder.mkdir(parents=True, exist_ok=True)
        path.write_text(str(os.getpid()))
        try:
            yield
        finally:
            path.unlink(missing_ok=True)

    def _await_claim(self, digest: str) -> None:
        """Wait while another live process holds a claim on these rows."""
        path, started = self._claim_path(digest), time.perf_counter()
        while time.perf_counter() - started < _MAX_WAIT_SECONDS:
            try:
                pid = int(path.read_text())
            except (OSError, ValueError):
                break
            if pid == os.getpid() or not process_alive(pid):
                break
            time.sleep(_POLL_SECONDS)
        waited = time.perf_counter() - started
        if waited >= _POLL_SECONDS:
            self.waited_seconds += waited
            log_event(log, "fit_awaited", digest=digest[:12], seconds=round(waited, 3))

    def cached(self, train: pa.Table, params: ALSParams, config: RankingConfig, previous: dict[str, Any]) -> bool:
        """Whether both fits of a retrain on ``train`` (the rating model and the ranking refit) are stored."""
        _, digest = self._canonical(train)
        als, ranking = self._als_key(digest, params), self._ranking_key(digest, config, previous)
        return (
            self._read(self._entry("als", als)) is not None and self._read(self._entry("ranking", ranking)) is not None
        )

    def _als_key(self, digest: str, params: ALSParams) -> str:
        return self._key("als", digest, {"params": asdict(params)})

    def _ranking_key(self, digest: str, config: RankingConfig, previous: dict[str, Any]) -> str:
        return self._key("ranking", digest, {"config": asdict(config), "previous": previous})

    def _stored(self, path: Path, digest: str) -> tuple[dict[str, Any] | None, float]:
        """The entry at ``path`` (after waiting for a claimed fit of these rows) and when its load starts."""
        doc = self._read(path)
        if doc is None:
            self._await_claim(digest)
            doc = self._read(path)
        return doc, time.perf_counter()

    def _key(self, kind: str, digest: str, settings: dict[str, Any]) -> str:
        spec = json.dumps({"kind": kind, "engine": self.engine, "cinematch": __version__, **settings},
                          sort_keys=True, default=str)  # fmt: skip
        return hashlib.sha256((spec + digest).encode()).hexdigest()[:40]

    def _entry(self, kind: str, key: str) -> Path:
        return self.folder / f"{kind}-{key}"

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            doc: dict[str, Any] = json.loads((path / ENTRY).read_text())
        except (OSError, ValueError):
            return None
        return doc

    def _put(self, path: Path, save: Callable[[Path], None], doc: dict[str, Any]) -> None:
        """Write an entry into a private folder, then rename it into place; a concurrent writer's copy wins."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        save(tmp)
        (tmp / ENTRY).write_text(json.dumps(doc, sort_keys=True, default=str) + "\n")
        try:
            os.rename(tmp, path)
            return
        except OSError:  # another process stored the same fit first, or a damaged entry is in the way
            if self._read(path) is None:
                shutil.rmtree(path, ignore_errors=True)
                try:
                    os.rename(tmp, path)
                    return
                except OSError:
                    pass
        shutil.rmtree(tmp, ignore_errors=True)

    def _hit(self, kind: str, key: str, doc: dict[str, Any], started: float) -> None:
        self.hits += 1
        self.fit_seconds_reused += float(doc["seconds"])
        self.load_seconds += time.perf_counter() - started
        log_event(log, "fit_reused", kind=kind, key=key[:12], fit_seconds=round(float(doc["seconds"]), 3),
                  load_seconds=round(time.perf_counter() - started, 3))  # fmt: skip

    def fit_ratings(
        self,
        table: pa.Table,
        params: ALSParams,
        progress: Callable[[int, float], None] | None,
        warm: tuple[ALSModel, int] | None = None,
    ) -> ALSModel:
        if warm is not None:  # starts from this policy's own champion (see the module docstring): made, not kept
            return self.inner.fit_ratings(table, params, progress, warm)
        table, digest = self._canonical(table)
        key = self._als_key(digest, params)
        path = self._entry("als", key)
        doc, started = self._stored(path, digest)
        if doc is not None:
            model = ALSModel.load(path)
            self._hit("als", key, doc, started)
            return model
        model = self.inner.fit_ratings(table, params, progress)
        self._put(path, model.save, {"seconds": time.perf_counter() - started})
        return model

    def fit_ranking(
        self,
        train: pa.Table,
        config: RankingConfig,
        previous: dict[str, Any] | None,
        full: bool,
        progress: Callable[[str], None] | None,
        warm: Ranker | None = None,
    ) -> Selection:
        if full or previous is None or warm is not None:
            return self.inner.fit_ranking(train, config, previous, full, progress, warm)
        train, digest = self._canonical(train)
        key = self._ranking_key(digest, config, previous)
        path = self._entry("ranking", key)
        doc, started = self._stored(path, digest)
        if doc is not None:
            ranker = Ranker.load(path)
            self._hit("ranking", key, doc, started)
            return Selection(ranker, Choice.from_dict(doc["choice"]), [], doc["catalogue"], float(doc["seconds"]))
        selection = self.inner.fit_ranking(train, config, previous, full, progress)
        doc = {"seconds": time.perf_counter() - started, "choice": selection.choice.as_dict(),
               "catalogue": selection.catalogue}  # fmt: skip
        self._put(path, selection.ranker.save, doc)
        return selection
