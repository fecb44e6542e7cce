"""The CI entry point and `make airflow` (issue 16, points 18 and 19): components installed, CI=true, loopback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _stub(folder: Path, name: str, log: Path) -> None:
    script = folder / name
    script.write_text(f'#!/bin/sh\necho "{name} $* CI=${{CI:-unset}}" >> {log}\n')
    script.chmod(0o755)


@pytest.mark.parametrize("initdb_present", [False, True])
def test_ci_run_installs_postgresql_and_exports_ci(tmp_path: Path, initdb_present: bool) -> None:
    """.ci/run installs the Debian `postgresql` package when initdb is absent and runs the suite with CI=true."""
    stubs, log = tmp_path / "bin", tmp_path / "calls.log"
    stubs.mkdir()
    for name in ("make", "apt-get", "chromium"):  # recorded, not run
        _stub(stubs, name, log)
    initdb = stubs / "chromium" if initdb_present else tmp_path / "no-initdb"
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "HOME": str(tmp_path), "CINEMATCH_CI_INITDB": str(initdb)}
    proc = subprocess.run(["bash", str(REPO / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    install = [c for c in calls if c.startswith("apt-get install") and " postgresql " in f"{c} "]
    assert bool(install) is not initdb_present, calls
    assert calls[-1] == "make test CI=true" and "make lint CI=true" in calls


def _airflow_api_host(tmp_path: Path, *make_args: str) -> str:
    """The API server host Airflow reads from the environment `make airflow` starts it with."""
    dry = subprocess.run(["make", "-s", "-n", "-C", str(REPO), "airflow", f"AIRFLOW_DIR={tmp_path / 'af'}",
                          *make_args], capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    start = next(line for line in dry.stdout.splitlines() if line.endswith(" standalone"))
    command = start.removeprefix("exec ").removesuffix(" standalone") + " config get-value api host"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    got = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr[-2000:]
    return got.stdout.strip().splitlines()[-1]


@pytest.mark.airflow
def test_make_airflow_listens_on_loopback_unless_asked(tmp_path: Path) -> None:
    assert _airflow_api_host(tmp_path) == "127.0.0.1"
    assert _airflow_api_host(tmp_path, "AIRFLOW_HOST=0.0.0.0") == "0.0.0.0"
