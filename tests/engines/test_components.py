"""The real components' test lifecycles (issue 16, point 19): no silent skip in CI, a clean Spark shutdown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("ci", [True, False])
def test_postgres_tests_fail_in_ci_when_the_server_binaries_are_missing(ci: bool) -> None:
    env = {**os.environ, "CINEMATCH_PG_BINDIR": str(REPO / "no-such-bindir"), "CI": "true" if ci else ""}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/storage/test_postgres.py::test_copy_round_trip_keeps_values"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    if ci:
        assert proc.returncode == 1 and "1 error" in proc.stdout, proc.stdout[-2000:]  # the fixture fails
        assert "missing in CI (CI=true): PostgreSQL server binaries" in proc.stdout
    else:  # on a developer's machine without PostgreSQL the tests skip, saying why
        assert proc.returncode == 0 and "1 skipped" in proc.stdout, proc.stdout[-2000:]


# Airflow's logging config sends root records to the stdout it found, which under pytest is the capture that
# pytest closes before the interpreter exits; py4j logs from its connections' __del__ at exit.
_SPARK = """import logging, os, sys
capture = open(os.devnull, "w")
logging.basicConfig(stream=capture, level=logging.INFO)
from pyspark.sql import SparkSession
spark = (SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
         .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC").getOrCreate())
assert spark.range(3).count() == 3
if sys.argv[1] == "stop_spark":
    from tests.conftest import stop_spark
    stop_spark()
else:
    spark.stop()
capture.close()
"""


@pytest.mark.spark
def test_spark_stops_without_a_py4j_logging_error_at_exit() -> None:
    runs = {how: subprocess.run([sys.executable, "-c", _SPARK, how], cwd=REPO, capture_output=True, text=True,
                                timeout=300) for how in ("session.stop", "stop_spark")}  # fmt: skip
    assert all(r.returncode == 0 for r in runs.values()), {k: r.stderr[-2000:] for k, r in runs.items()}
    assert "--- Logging error ---" in runs["session.stop"].stderr  # what `make test` ended with
    assert "--- Logging error ---" not in runs["stop_spark"].stderr, runs["stop_spark"].stderr[-2000:]
