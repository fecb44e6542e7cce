"""The lock-wait message names the process that holds the home's lock now, not the last writer (issue 16, point 11)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.reliability._homes import cinematch, env_for

pytestmark = pytest.mark.reliability

_HOLD = """import sys
from cinematch.core.settings import Settings
from cinematch.storage.lock import HomeLock
with HomeLock(Settings(home=sys.argv[1]), exclusive=sys.argv[2] == "writer", command="hold test"):
    print("held", flush=True)
    sys.stdin.readline()
"""


def _hold(home: Path, role: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(home), role], env=env_for(home), text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _release(proc: subprocess.Popen) -> None:
    proc.communicate("\n", timeout=30)


def test_lock_wait_names_the_reader_holding_it_not_the_last_writer(tmp_path: Path) -> None:
    home = tmp_path / "home"
    last_writer = subprocess.Popen([sys.executable, "-m", "cinematch", "init"], env=env_for(home))
    assert last_writer.wait(timeout=120) == 0
    assert f'"pid": {last_writer.pid}' in (home / ".lock").read_text()  # the record names a process now gone
    reader = _hold(home, "reader")
    try:
        waiter = cinematch(home, "etl", CINEMATCH_LOCK_TIMEOUT_SECONDS="0.5", CINEMATCH_LOG_LEVEL="INFO")
    finally:
        _release(reader)
    assert waiter.returncode == 1, waiter.stderr
    error = waiter.stderr.strip().splitlines()[-1]
    assert f"(pid {reader.pid}: python, reading)" in error, error
    assert f"pid {last_writer.pid}" not in waiter.stderr
    assert f'event=waiting_for_lock holder="pid {reader.pid}: python, reading"' in waiter.stderr


def test_lock_wait_names_the_writer_holding_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert cinematch(home, "init").returncode == 0
    writer = _hold(home, "writer")
    try:
        waiter = cinematch(home, "status", CINEMATCH_LOCK_TIMEOUT_SECONDS="0.5")
    finally:
        _release(writer)
    assert waiter.returncode == 1
    assert waiter.stderr.strip().splitlines() == [
        f"error: another cinematch command (pid {writer.pid}: hold test, writing) holds the lock of {home}; "
        "wait for it to finish and run this again"
    ]
