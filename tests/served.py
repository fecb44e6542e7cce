"""The served home of the serving and web tests: three weekly batches, two trainings and three drift reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from tests.conftest import make_ratings

from cinematch.core.settings import Settings
from cinematch.ingest.bronze import ingest_file
from cinematch.lakehouse.etl import run_etl
from cinematch.recommender.training import params_from_settings, train_warehouse
from cinematch.storage.audit import utcnow
from cinematch.storage.warehouse import write_session

API_KEY = "test-admin-key"
GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller"]
N_MOVIES = 120
DRIFT_SCORES = (0.2, 0.7, 1.4)


def movies_csv(n: int = N_MOVIES) -> str:
    rows = (f'{i},"Movie {i}, Part {i % 3} ({1980 + i % 40})",{GENRES[i % 7]}|{GENRES[(i * 3) % 7]}\n'
            for i in range(1, n + 1))  # fmt: skip
    return "movieId,title,genres\n" + "".join(rows)


def build_home(root: Path, train: bool = True) -> Settings:
    """Three weekly batches, two trainings (rank 8, 5 iterations), three drift reports."""
    # a generous tolerance promotes the second model, so the champion has seen all three batches
    settings = Settings(home=root / "home", api_key=None, promotion_tolerance=1.0, promotion_ndcg_tolerance=1.0)
    rng = np.random.default_rng(2024)
    (root / "movies.csv").write_text(movies_csv())
    batches = []
    for week, start in enumerate(("2024-01-01", "2024-02-01", "2024-03-01"), start=1):
        path = root / f"batch_w{week}.parquet"
        pq.write_table(make_ratings(rng, n=2500, users=150, movies=N_MOVIES, start=start), path)
        batches.append(path)
    params = params_from_settings(settings, rank=8, iterations=5)
    with write_session(settings, "test") as con:
        ingest_file(con, root / "movies.csv", kind="movies")
        ingest_file(con, batches[0])
        run_etl(con, settings, write_lake=False)
        if train:
            train_warehouse(con, settings, params)
        for path in batches[1:]:
            ingest_file(con, path)
        run_etl(con, settings, write_lake=False)
        if train:
            train_warehouse(con, settings, params)
            version = con.execute("select version from ops.model_registry where is_champion").fetchall()[0][0]
            for i, score in enumerate(DRIFT_SCORES):
                con.execute(
                    "insert into ops.drift_reports values (?, ?, ?, ?, 2500, 2500, ?, ?, ?, null, null, ?, "
                    "null, null, null, ?, ?, '{}')",
                    [f"r{i}", utcnow(), version, json.dumps([f"batch_w{i + 1}"]), score / 4, score / 8, 0.0, score,
                     "retrain" if score >= 1 else "ok", score >= 1],
                )  # fmt: skip
    return settings
