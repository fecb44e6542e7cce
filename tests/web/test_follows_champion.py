"""Issue 16, point 13: a running API follows the champion after `models rollback`, `models promote` and an
automatic promotion by `cinematch train`, without anyone running `cinematch publish`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx2
from tests.web.conftest import start_cli_server, wait_ready

from cinematch.core.settings import Settings
from cinematch.serving.publish import publish
from cinematch.storage.warehouse import write_session


def _cli(home: Settings, *args: str) -> dict:
    env = {**os.environ, "CINEMATCH_HOME": str(home.home), "CINEMATCH_PROMOTION_TOLERANCE": "1.0",
           "CINEMATCH_PROMOTION_NDCG_TOLERANCE": "1.0"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "cinematch", *args, "--json"], capture_output=True, text=True,
                          env=env, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _served_version(url: str, expected: str, timeout: float = 10.0) -> str:
    """The model version the API serves, waiting up to ``timeout`` s for it to become ``expected``."""
    deadline = time.monotonic() + timeout
    while True:
        served = httpx2.get(f"{url}/recommendations/1", timeout=5).json()["model_version"]
        if served == expected or time.monotonic() > deadline:
            return served
        time.sleep(0.2)


def test_the_api_follows_every_change_of_champion(served_home: Settings, tmp_path: Path) -> None:
    home = Settings(home=tmp_path / "home", api_key=None)
    home.home_dir.mkdir(parents=True)
    shutil.copy(served_home.duckdb_path, home.duckdb_path)
    shutil.copytree(served_home.models_dir, home.models_dir)
    with write_session(home, "publish") as con:
        publish(con, home)
    models = _cli(home, "models", "list")
    first, second = sorted(m["version"] for m in models["models"])
    assert models["champion"] == second
    srv = start_cli_server(home, tmp_path / "serve.log")
    try:
        wait_ready(srv.url)
        assert _served_version(srv.url, second) == second
        back = _cli(home, "models", "rollback")
        assert back["champion"] == first and back["published"]
        assert _served_version(srv.url, first) == first  # no `cinematch publish` in between
        _cli(home, "models", "promote", second)
        assert _served_version(srv.url, second) == second
        trained = _cli(home, "train", "--rank", "4", "--iterations", "2")
        assert trained["promoted"] and trained["published"]
        assert _served_version(srv.url, trained["version"]) == trained["version"]
    finally:
        srv.stop()
