"""Shared helpers for the benchmark scripts: timing, machine description, JSON output."""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SCRATCH = Path(os.environ.get("CINEMATCH_BENCH_DIR", Path(__file__).parent / ".data"))
# the MovieLens sample beside the repository (../shared/data), used for accuracy figures when it is there
MOVIELENS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small" / "ratings.csv"


def ratings_batch_file(rows: int) -> Path:
    """A cached generated Parquet batch of ``rows`` MovieLens-shaped ratings (shared by the ingestion benchmarks)."""
    import pyarrow.parquet as pq

    from cinematch.datasets.generate import generate_tables
    from cinematch.datasets.generate_config import GenerateConfig

    path = SCRATCH / f"ingest_{rows}.parquet"
    if not path.exists():
        users, movies = max(1000, rows // 150), max(1000, rows // 400)
        table = generate_tables(GenerateConfig(users=users, movies=movies, ratings=rows, weeks=1, batch_ratings=100))
        SCRATCH.mkdir(parents=True, exist_ok=True)
        pq.write_table(table["ratings"], path)
    return path


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
            "system": f"{platform.system()} {platform.release()}"}  # fmt: skip


def write_json(path: Path | None, doc: dict[str, Any]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
