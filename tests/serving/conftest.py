"""Serving fixtures: one small home built through the library, published, and served by real uvicorn servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import numpy as np
import pyarrow.parquet as pq
import pytest
import uvicorn
from tests.conftest import make_ratings

from cinematch.core.settings import Settings
from cinematch.ingest.bronze import ingest_file
from cinematch.lakehouse.etl import run_etl
from cinematch.recommender.training import params_from_settings, train_warehouse
from cinematch.serving.publish import publish
from cinematch.storage.audit import utcnow
from cinematch.storage.warehouse import write_session
from cinematch.web.api import create_app

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


@pytest.fixture(scope="session")
def served_home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = build_home(tmp_path_factory.mktemp("serving"))
    with write_session(settings, "publish") as con:
        publish(con, settings)
    return settings


def wait_ready(url: str, timeout: float = 30.0, status: int = 200) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx2.get(f"{url}/health", timeout=2).status_code == status:
                return
        except httpx2.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer /health with {status} within {timeout}s")
        time.sleep(0.1)


@dataclass
class CliServer:
    """`cinematch serve --port 0 --json` as a subprocess; stderr (the request log) goes to a file."""

    proc: subprocess.Popen
    url: str
    log_path: Path
    doc: dict  # the JSON document `serve --json` printed at start

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        out = self.proc.stdout.read() if self.proc.stdout else ""
        return self.proc.returncode, out, self.log_path.read_text()


def start_cli_server(settings: Settings, log_path: Path, *args: str, api_key: str | None = None) -> CliServer:
    env = {**os.environ, "CINEMATCH_HOME": str(settings.home)}
    env.pop("CINEMATCH_API_KEY", None)
    if api_key:
        env["CINEMATCH_API_KEY"] = api_key
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cinematch", "serve", "--port", "0", "--json", *args],
            stdout=subprocess.PIPE, stderr=log, text=True, env=env,
        )  # fmt: skip
    line = proc.stdout.readline() if proc.stdout else ""
    if not line:
        proc.wait(timeout=10)
        raise RuntimeError(f"server did not start: {log_path.read_text()}")
    doc = json.loads(line)
    return CliServer(proc, doc["url"], log_path, doc)


@pytest.fixture(scope="session")
def server(served_home: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliServer]:
    """The served home behind a real `cinematch serve` (with an admin key)."""
    srv = start_cli_server(served_home, tmp_path_factory.mktemp("logs") / "serve.log", api_key=API_KEY)
    try:
        wait_ready(srv.url)
        yield srv
    finally:
        srv.stop()


class ThreadServer:
    """A uvicorn server in a thread of the test process, for apps built with particular settings."""

    def __init__(self, settings: Settings) -> None:
        self.server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=0,
                                                    log_level="warning", lifespan="off"))  # fmt: skip
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
