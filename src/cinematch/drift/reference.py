"""The stored reference snapshot of a model's training ratings: its JSON form and its files on disk."""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cinematch.core.errors import BadInput
from cinematch.drift.histograms import HALF_STAR_BINS, N_BINS, compact_ids
from cinematch.storage.files import atomic_write

__all__ = ["MOVIE_IDS_FILE", "REFERENCE_JSON", "SCHEMA_VERSION", "USER_IDS_FILE", "ReferenceStats"]

SCHEMA_VERSION = 1
REFERENCE_JSON = "reference.json"
USER_IDS_FILE = "user_ids.npy"
MOVIE_IDS_FILE = "movie_ids.npy"


@dataclass(eq=False)
class ReferenceStats:
    """What a drift check needs from the training data, computed once per model version.

    The JSON holds the histograms and moments; the sorted unique user and movie ids are stored beside it
    as .npy arrays (int32 when they fit: ~0.6 MB for ML-25M's 162k users, against ~1.5 MB as JSON text).
    """

    n: int
    histogram: list[int]
    mean: float
    median: float
    user_ids: np.ndarray | None = None  # sorted unique
    movie_ids: np.ndarray | None = None  # sorted unique
    genre_histograms: dict[str, list[int]] = field(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReferenceStats):
            return NotImplemented

        def same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
            return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))

        return (
            self.to_dict() == other.to_dict()
            and same(self.user_ids, other.user_ids)
            and same(self.movie_ids, other.movie_ids)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, like any eq dataclass

    def to_dict(self, include_ids: bool = False) -> dict[str, Any]:
        """JSON-serialisable form; ids as lists only with ``include_ids`` (``save`` writes them as .npy)."""
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "bins": HALF_STAR_BINS.tolist(),
            "n": int(self.n),
            "histogram": [int(c) for c in self.histogram],
            "mean": float(self.mean),
            "median": float(self.median),
            "n_users": None if self.user_ids is None else int(self.user_ids.size),
            "n_movies": None if self.movie_ids is None else int(self.movie_ids.size),
            "genre_histograms": {g: [int(c) for c in h] for g, h in sorted(self.genre_histograms.items())},
        }
        if include_ids:
            out["user_ids"] = None if self.user_ids is None else self.user_ids.tolist()
            out["movie_ids"] = None if self.movie_ids is None else self.movie_ids.tolist()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceStats:
        version = data.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise BadInput(f"reference stats schema {version} is not supported (expected {SCHEMA_VERSION})")
        histogram = [int(c) for c in data["histogram"]]
        if len(histogram) != N_BINS:
            raise BadInput(f"reference histogram has {len(histogram)} bins, expected {N_BINS}")

        def ids(key: str) -> np.ndarray | None:
            values = data.get(key)
            return None if values is None else compact_ids(np.asarray(values))

        return cls(
            n=int(data["n"]),
            histogram=histogram,
            mean=float(data["mean"]),
            median=float(data["median"]),
            user_ids=ids("user_ids"),
            movie_ids=ids("movie_ids"),
            genre_histograms={g: [int(c) for c in h] for g, h in data.get("genre_histograms", {}).items()},
        )

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write reference.json (+ user_ids.npy, movie_ids.npy) into ``directory``; returns the JSON path."""
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        for name, ids in ((USER_IDS_FILE, self.user_ids), (MOVIE_IDS_FILE, self.movie_ids)):
            if ids is not None:
                atomic_write(root / name, functools.partial(np.save, arr=ids, allow_pickle=False))
            else:
                (root / name).unlink(missing_ok=True)  # a stale file would be read back by load()
        payload = json.dumps(self.to_dict(), indent=2, sort_keys=True).encode()
        atomic_write(root / REFERENCE_JSON, lambda fh: fh.write(payload))
        return root / REFERENCE_JSON

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ReferenceStats:
        root = Path(directory)
        path = root / REFERENCE_JSON
        if not path.is_file():
            raise BadInput(f"no reference stats at {path}; compute them when the model is trained")
        stats = cls.from_dict(json.loads(path.read_text()))
        for attr, name in (("user_ids", USER_IDS_FILE), ("movie_ids", MOVIE_IDS_FILE)):
            if (root / name).is_file():
                setattr(stats, attr, np.load(root / name, allow_pickle=False))
        return stats
