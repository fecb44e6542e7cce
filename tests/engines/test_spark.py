"""The Spark engine against the DuckDB engine on the same data: silver, gold, gates, ALS, spark-submit."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from cinematch import spark_submit
from cinematch.core.errors import QualityGateFailed
from cinematch.core.settings import Settings
from cinematch.datasets.generate import generate_tables
from cinematch.datasets.generate_config import GenerateConfig
from cinematch.datasets.generate_files import write_tables
from cinematch.drift.check import check_drift
from cinematch.engines.spark_als import fit_spark_als
from cinematch.engines.spark_lake import POINTER, LakeLocation, current_version
from cinematch.ingest.bronze import ingest_file
from cinematch.lakehouse import gold_checks
from cinematch.lakehouse.etl import logical_end
from cinematch.lakehouse.quality import Check
from cinematch.pipelines.engine import run_etl, train_warehouse
from cinematch.recommender import registry
from cinematch.recommender.als import ALSModel
from cinematch.recommender.als_params import ALSParams
from cinematch.recommender.training import params_from_settings
from cinematch.recommender.training_set import ratings_of, stable_split
from cinematch.storage.warehouse import write_session

pytestmark = [
    pytest.mark.spark,
    # the engine exchanges data through Arrow and Parquet; PySpark's pandas-3 notice does not apply
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]

REPO = Path(__file__).resolve().parents[2]
# Short-lived JVMs: C1-only JIT and the serial GC start and warm up several times faster on 2 cores; C1 frames
# are larger, so threads get a bigger stack for MLlib ALS's recursive lineage.
JAVA_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xss8m"
KEYS = {
    "silver.ratings": ("user_id", "movie_id", "rated_at"),
    "silver.movies": ("movie_id",),
    "silver.processed_batches": ("batch_id",),
    "gold.genre_analytics": ("genre", "year", "month"),
    "gold.trending_movies": ("window_days", "movie_id"),
    "gold.temporal_trends": ("year", "genre"),
    "gold.user_engagement": ("user_id",),
    "gold.movie_kpis": ("movie_id",),
}
LAYERS = [t for t in KEYS if t != "silver.processed_batches"]
GOLD = [t for t in LAYERS if t.startswith("gold.")]
FIRST = ("movies", "ratings", "batch_w1", "rerate")  # ingested before the first ETL, in this order


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """One local[2] session for the module (the engine reuses the active session)."""
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("cinematch-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        # AQE re-plans every stage; on a few thousand rows that costs more than it saves.
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.driver.extraJavaOptions", JAVA_OPTS)
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The brief's generated data, plus 4 undescribed movies (placeholders) and a batch that re-rates 150 keys."""
    out = tmp_path_factory.mktemp("data")
    tables = generate_tables(GenerateConfig(users=300, movies=200, ratings=8000, weeks=2, seed=3))
    movies = tables["movies"]
    rated = pc.unique(tables["ratings"].column("movie_id"))
    dropped = rated.slice(0, 4)
    tables["movies"] = movies.filter(pc.invert(pc.is_in(movies.column("movieId"), value_set=dropped)))
    again = tables["ratings"].slice(100, 150)
    new = ((again.column("rating").to_numpy() * 2) % 10 + 1) / 2  # another valid half-star rating
    tables["rerate"] = again.set_column(2, "rating", pa.array(new))
    del tables["users"]
    files = write_tables(tables, out)
    return {name: Path(info["path"]) for name, info in files.items()}


def _ingest(settings: Settings, dataset: dict[str, Path], names: tuple[str, ...]) -> None:
    with write_session(settings) as con:
        for name in names:
            ingest_file(con, dataset[name], kind="movies" if name == "movies" else "ratings")


def _home(root: Path, name: str, template: Path | None = None, **overrides: Any) -> Settings:
    home = root / name
    if template is not None:
        shutil.copytree(template, home, symlinks=True)
    return Settings(home=home, spark_master="local[2]", **overrides)


def _etl(settings: Settings, **kwargs: Any) -> dict:
    with write_session(settings) as con:
        return run_etl(con, settings, **kwargs)


def _rows(settings: Settings, table: str) -> tuple[list[str], list[str], list[tuple]]:
    with write_session(settings) as con:
        rel = con.sql(f"select * from {table} order by {', '.join(KEYS[table])}")
        return rel.columns, [str(t) for t in rel.types], rel.fetchall()


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def assert_same_tables(left: Settings, right: Settings, tables: list[str], skip: tuple[str, ...] = ()) -> None:
    """Same columns, types, row count and keys; values equal, floats within 1e-9 relative."""
    for table in tables:
        lcols, ltypes, lrows = _rows(left, table)
        rcols, rtypes, rrows = _rows(right, table)
        assert (lcols, ltypes) == (rcols, rtypes), table
        assert len(lrows) == len(rrows), f"{table}: {len(lrows)} vs {len(rrows)} rows"
        key_idx = [lcols.index(k) for k in KEYS[table]]
        assert [[r[i] for i in key_idx] for r in lrows] == [[r[i] for i in key_idx] for r in rrows], table
        for lrow, rrow in zip(lrows, rrows, strict=True):
            for col, a, b in zip(lcols, lrow, rrow, strict=True):
                if col not in skip:
                    assert _same_value(a, b), f"{table}.{col} at {[lrow[i] for i in key_idx]}: {a!r} vs {b!r}"


def _checks(run: dict) -> list[tuple[str, bool]]:
    return [(c["check"], c["passed"]) for layer in run["layers"].values() for c in layer.get("checks", [])]


def _failed(run: dict) -> list[str]:
    """Failed hard checks (soft ones, such as the placeholder share, are only reported)."""
    return [
        c["check"]
        for layer in run["layers"].values()
        for c in layer.get("checks", [])
        if not c["passed"] and c["severity"] == "hard"
    ]


@pytest.fixture(scope="module")
def built(spark: Any, dataset: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Bronze loaded once; then the DuckDB engine and the Spark engine each run the ETL on a copy."""
    root = tmp_path_factory.mktemp("homes")
    bronze = _home(root, "bronze")
    _ingest(bronze, dataset, FIRST)
    duck = _home(root, "duckdb", bronze.home)
    spk = _home(root, "spark", bronze.home, engine="spark")
    return {"bronze": bronze, "duckdb": duck, "spark": spk, "runs": {"duckdb": _etl(duck), "spark": _etl(spk)}}


def test_silver_and_gold_match_duckdb(built: dict[str, Any]) -> None:
    run = built["runs"]["spark"]
    assert run["engine"] == "spark" and run["status"] == "completed" and not _failed(run)
    assert run["placeholders"] == 4
    assert _checks(run) == _checks(built["runs"]["duckdb"])
    assert run["layers"]["silver"]["rows"] == built["runs"]["duckdb"]["layers"]["silver"]["rows"]
    assert run["layers"]["gold"]["rows"] == built["runs"]["duckdb"]["layers"]["gold"]["rows"]
    assert run["as_of"] == built["runs"]["duckdb"]["as_of"]
    assert_same_tables(built["duckdb"], built["spark"], LAYERS)
    assert_same_tables(built["duckdb"], built["spark"], ["silver.processed_batches"], skip=("processed_at",))
    # dedup: every re-rated key holds the later batch's rating
    _, _, rows = _rows(built["spark"], "silver.ratings")
    assert sum(r[4] == "rerate" for r in rows) == 150


def test_lake_holds_published_versions_and_reruns_skip_spark(built: dict[str, Any], monkeypatch) -> None:
    lake_dir = built["spark"].lake_dir
    for table in (*LAYERS, "bronze.ratings_buffer", "bronze.movies"):
        link = lake_dir / Path(*table.split("."))
        assert link.is_symlink() and any(link.resolve().rglob("*.parquet")), table
        assert len(list(link.parent.glob(f".{link.name}-*"))) == 1, f"{table}: old versions left behind"
    n = pq.read_table(lake_dir / "silver" / "ratings", columns=["user_id"]).num_rows
    assert n == built["runs"]["spark"]["layers"]["silver"]["rows"]["ratings"]

    import cinematch.engines.spark as engine

    monkeypatch.setattr(engine, "compute_silver_gold", lambda *a, **k: pytest.fail("Spark ran with nothing new"))
    home = _home(built["spark"].home.parent, "spark-rerun", built["spark"].home, engine="spark")
    again = _etl(home)
    assert again["up_to_date"] is True and again["layers"]["gold"]["skipped"] and not _failed(again)


def test_incremental_backfill_on_object_store_layout_match_duckdb(
    built: dict[str, Any], dataset: dict[str, Path], tmp_path: Path, monkeypatch
) -> None:
    duck = _home(tmp_path, "duckdb", built["duckdb"].home)
    # a file:// lake URI takes the object-store path: Arrow hand-off, v-<id> folders and a _CURRENT pointer
    uri = f"file://{tmp_path / 'objects'}"
    spk = _home(tmp_path, "spark", built["spark"].home, engine="spark", lake_uri=uri)
    _ingest(duck, dataset, ("batch_w2",))
    _ingest(spk, dataset, ("batch_w2",))
    # incremental silver (one new batch) and a backfill of gold to an earlier logical date, in one run
    as_of = logical_end(date(2024, 3, 31))
    runs = {"duckdb": _etl(duck, as_of=as_of), "spark": _etl(spk, as_of=as_of)}
    assert runs["spark"]["new_batches"] == ["batch_w2"] and not _failed(runs["spark"])
    assert runs["spark"]["as_of"] == runs["duckdb"]["as_of"] == as_of
    assert runs["spark"]["layers"]["silver"]["merged"] == runs["duckdb"]["layers"]["silver"]["merged"]
    # batch_w2 was ingested into each home separately, a moment apart
    assert_same_tables(duck, spk, LAYERS, skip=("ingested_at",))

    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    table_dir = tmp_path / "objects" / "gold" / "movie_kpis"
    published = (table_dir / POINTER).read_text().strip()
    assert published.startswith("v-") and [p.name for p in table_dir.glob("v-*")] == [published]
    current = current_version(spark, LakeLocation.from_settings(spk), "gold.movie_kpis")
    assert spark.read.parquet(current).count() == runs["duckdb"]["layers"]["gold"]["rows"]["movie_kpis"]

    # a failed gold gate rolls gold back and leaves no unpublished version behind
    bad = Check("movie_kpis.always_fails", "movie_kpis", "select 1 as offending")
    monkeypatch.setattr(gold_checks, "GOLD_CHECKS", (*gold_checks.GOLD_CHECKS, bad))
    before = _rows(spk, "gold.movie_kpis")
    with pytest.raises(QualityGateFailed, match="always_fails"):
        _etl(spk, full_refresh=True)
    assert _rows(spk, "gold.movie_kpis") == before
    assert [p.name for p in table_dir.glob("v-*")] == [published]


def test_spark_als_known_answer_blocks(spark: Any) -> None:
    """Two taste groups over two item groups: the factors must map back to the right external ids."""
    rng = np.random.default_rng(5)
    users = np.arange(1000, 1040)  # external ids far from MLlib's 0..n-1 indices
    items = np.arange(500, 520) * 7
    u, i = np.meshgrid(np.arange(40), np.arange(20), indexing="ij")
    likes = (u < 20) == (i < 10)
    keep = rng.random(u.shape) < 0.7
    table = pa.table({"user_id": users[u[keep]], "movie_id": items[i[keep]],
                      "rating": np.where(likes[keep], 5.0, 1.0)})  # fmt: skip
    model = fit_spark_als(table, ALSParams(rank=2, reg=0.05, iterations=10, seed=1), spark=spark)
    held_u, held_i = users[u[~keep]], items[i[~keep]]
    predicted, fallback = model.predict(held_u, held_i)
    assert not fallback.any()
    error = np.abs(predicted - np.where(likes[~keep], 5.0, 1.0))
    assert error.mean() < 0.3 and error.max() < 1.0  # the two answers are 4 apart
    top, _ = model.recommend(users[[0, 39]], n=3)
    assert set(top[0]) <= set(items[:10]) and set(top[1]) <= set(items[10:])


def test_spark_als_registers_serves_and_drift_checks(built: dict[str, Any], tmp_path: Path) -> None:
    home = _home(tmp_path, "spark", built["spark"].home, engine="spark")
    # MLlib has no unweighted reg_const: on ~27 ratings per user it needs a larger reg than the NumPy ALS's 0.05
    params = params_from_settings(home, rank=8, iterations=6, reg=0.2)
    with write_session(home) as con:
        result = train_warehouse(con, home, params, merge=["ratings"])
        row = registry.get_model(con, result["version"])
        assert row["status"] == "champion" and row["params"]["rank"] == 8
        assert registry.load_metadata(home, result["version"])["engine"] == "spark"
        model = ALSModel.load(registry.model_dir(home, result["version"]))
        assert model.user_factors.shape == (model.n_users, 8) and np.isfinite(model.user_factors).all()
        assert np.abs(model.user_bias).max() > 0 and np.abs(model.item_factors).max() > 0

        # held-out RMSE beats the best constant (the training mean) by a clear margin
        train, test = stable_split(ratings_of(con, ["ratings"]), seed=home.seed)
        mean_only = float(np.sqrt(np.mean((test.column("rating").to_numpy() - model.global_mean) ** 2)))
        assert result["rmse"] < 0.95 * mean_only
        assert model.global_mean == pytest.approx(float(np.mean(train.column("rating").to_numpy())), rel=1e-6)

        recs = con.execute(
            "select count(*), count(distinct user_id), min(model_version), max(model_version) "
            "from serving.recommendations"
        ).fetchall()[0]
        users = con.execute("select count(distinct user_id) from silver.ratings").fetchall()[0][0]
        assert recs[0] == 10 * users and recs[1] == users and recs[2] == recs[3] == result["version"]

        drift = check_drift(con, home)
        assert drift["model_version"] == result["version"] and drift["batch_ids"] == ["batch_w1", "rerate"]
        assert drift["model_rmse_current"] is not None and 0 < drift["model_rmse_current"] < 2
        stored = con.execute("select count(*) from ops.drift_reports where model_version = ?", [result["version"]])
        assert stored.fetchall()[0][0] == 1


def test_spark_submit_etl_job_leaves_the_same_gold(built: dict[str, Any], tmp_path: Path) -> None:
    home = _home(tmp_path, "submit", built["bronze"].home)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CINEMATCH_", "PYSPARK_", "SPARK_"))}
    env["PYSPARK_PYTHON"] = sys.executable
    cmd = [
        str(Path(sys.executable).parent / "spark-submit"), "--master", "local[2]",
        "--driver-java-options", JAVA_OPTS, "--conf", "spark.ui.enabled=false",
        "--conf", "spark.sql.shuffle.partitions=4", "--conf", "spark.sql.adaptive.enabled=false",
        str(REPO / "src" / "cinematch" / "spark_submit.py"), "etl", "--home", str(home.home), "--tag", "t1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # spark-submit merges the driver's stderr into its stdout: the JSON document is the last line
    ref = json.loads(proc.stdout.strip().splitlines()[-1])
    in_process = [name for name, passed in _checks(built["runs"]["spark"]) if not passed]
    assert ref["command"] == "etl" and ref["status"] == "completed" and ref["checks_failed"] == in_process
    stored = json.loads(spark_submit.ref_path(home.home_dir, "etl", "t1").read_text())
    assert stored == ref
    assert_same_tables(built["spark"], home, LAYERS)
