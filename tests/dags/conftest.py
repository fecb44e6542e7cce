"""Real Airflow for the DAG tests: a migrated SQLite metadata DB, the repo's dags/, a tiny CineMatch home."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.webhook_recorder import WebhookRecorder

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags"
POOL = "cinematch_warehouse"
DAG_IDS = (
    "buffer_ingestion_weekly",
    "medallion_pipeline",
    "etl_train_test_pipeline",
    "drift_detection_retrain_pipeline",
)

# Airflow reads its configuration when it is first imported, so the environment is set here, at collection
# time, before any test imports it. Only AIRFLOW_* variables: CINEMATCH_HOME is set per test.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="cinematch-airflow-"))
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)
AIRFLOW_ENV = {
    "AIRFLOW_HOME": str(_AIRFLOW_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    # retries wait 1 s here (300 s by default) so the retry test is quick; the backoff doubles it
    "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "1",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
}
os.environ.update(AIRFLOW_ENV)


def airflow_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the `airflow` command of this interpreter's environment, as `make airflow` does."""
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **AIRFLOW_ENV},
    )
    assert proc.returncode == 0, f"airflow {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


@pytest.fixture(scope="session")
def airflow_env() -> dict[str, str]:
    """The AIRFLOW_* variables of this session (for subprocesses)."""
    return dict(AIRFLOW_ENV)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """`airflow db migrate` and the one-writer pool, once per session."""
    try:
        import airflow  # noqa: F401
    except ImportError:
        pytest.fail(
            "apache-airflow is not installed: run `make test` (EXTRAS has airflow) or pip install -e '.[airflow]'"
        )
    airflow_cli("db", "migrate")
    airflow_cli("pools", "set", POOL, "1", "CineMatch warehouse: DuckDB has one writer")
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def dagbag(airflow_db: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER), known_pools={"default_pool", POOL})


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny generated dataset: base ratings (Jan 1 to Mar 24, 2024), movies, three weekly batches."""
    from cinematch.datasets.generate import generate_dataset
    from cinematch.datasets.generate_config import GenerateConfig

    out = tmp_path_factory.mktemp("dataset")
    generate_dataset(out, GenerateConfig(users=300, movies=200, ratings=8000, weeks=3, seed=3))
    return out


@dataclass
class Home:
    """A fresh CINEMATCH_HOME for one test, with helpers to drop files into landing and query the warehouse."""

    path: Path
    dataset: Path
    landed: list[str] = field(default_factory=list)

    @property
    def landing(self) -> Path:
        return self.path / "landing"

    def land(self, *names: str) -> None:
        """Copy dataset files into landing (`ratings.parquet` lands as `base.parquet`, batch id `base`)."""
        self.landing.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy(self.dataset / name, self.landing / ("base.parquet" if name == "ratings.parquet" else name))

    def query(self, sql: str) -> list[tuple]:
        import duckdb

        con = duckdb.connect(str(self.path / "warehouse.duckdb"), read_only=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def views(self) -> tuple[str, dict[str, Any], Any]:
        """The views file serving/CURRENT names: its name, its meta row and the newest as_of of its trending."""
        import duckdb

        name = (self.path / "serving" / "CURRENT").read_text().strip()
        con = duckdb.connect(str(self.path / "serving" / name), read_only=True)
        try:
            cur = con.execute("select * from meta")
            meta = dict(zip([d[0] for d in cur.description], cur.fetchall()[0], strict=True))
            trending_as_of = con.execute("select max(as_of) from trending").fetchall()[0][0]
        finally:
            con.close()
        return name, meta, trending_as_of

    def snapshot(self, exclude: tuple[str, ...] = ("ops.pipeline_runs",)) -> dict[str, tuple]:
        """Row count and an order-independent content hash of every warehouse table (audit logs excluded)."""
        tables = [f"{s}.{t}" for s, t in self.query(
            "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE' "
            "order by 1, 2")]  # fmt: skip
        return {t: self.query(f"select count(*), bit_xor(hash(x)) from {t} x")[0] for t in tables if t not in exclude}


@pytest.fixture
def home(tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    """Tasks run in this process under dag.test(), so the environment set here is what they read."""
    path = tmp_path / "cinematch-home"
    monkeypatch.setenv("CINEMATCH_HOME", str(path))
    for var in ("CINEMATCH_DATABASE_URL", "CINEMATCH_ENGINE", "CINEMATCH_ALERT_WEBHOOK", "CINEMATCH_ALERT_WEBHOOK_URL"):
        monkeypatch.delenv(var, raising=False)
    return Home(path, dataset)


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookRecorder]:
    """A local HTTP endpoint recording the JSON posted to CINEMATCH_ALERT_WEBHOOK."""
    with WebhookRecorder() as hook:
        monkeypatch.setenv("CINEMATCH_ALERT_WEBHOOK", hook.url)
        yield hook


@dataclass
class Run:
    """The outcome of one dag.test(): run state, task states and tries, and each task's XCom."""

    state: str
    states: dict[str, str]
    tries: dict[str, int]
    xcom: dict[str, Any]


@pytest.fixture
def run_dag(airflow_db: Path):
    """Run a DAG with dag.test() and return its states and return values.

    Each run parses the DAG afresh, as a worker would: in one process, dag.test() merges a run's conf into the
    DAG object's params, which would leak into the next run of the same object.
    """

    def run(dag_id: str, day: str, conf: dict | None = None) -> Run:
        from airflow.dag_processing.dagbag import DagBag
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        dag = DagBag(dag_folder=str(DAGS_FOLDER), known_pools={"default_pool", POOL}).dags[dag_id]
        dr = dag.test(logical_date=datetime.fromisoformat(day).replace(tzinfo=UTC), run_conf=conf)
        with create_session() as session:
            tis = dr.get_task_instances(session=session)
            rows = session.scalars(
                select(XComModel).where(
                    XComModel.dag_id == dag_id, XComModel.run_id == dr.run_id, XComModel.key == "return_value"
                )
            )
            xcom = {row.task_id: XComModel.deserialize_value(row) for row in rows}
            return Run(
                str(dr.state),
                {ti.task_id: str(ti.state) for ti in tis},
                {ti.task_id: ti.try_number for ti in tis},
                xcom,
            )

    return run


@pytest.fixture
def asset_events(airflow_db: Path):
    """How many events the metadata DB holds for an asset URI."""

    def count(uri: str) -> int:
        from airflow.models.asset import AssetEvent, AssetModel
        from airflow.utils.session import create_session
        from sqlalchemy import func, select

        with create_session() as session:
            query = select(func.count()).select_from(AssetEvent).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            return session.scalar(query.where(AssetModel.uri == uri))

    return count
