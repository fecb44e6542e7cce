"""Web fixtures: the served home behind real uvicorn servers (a `cinematch serve` subprocess, or a thread)."""

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
import pytest
import uvicorn
from tests.served import API_KEY

from cinematch.core.settings import Settings
from cinematch.web.api import create_app


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
