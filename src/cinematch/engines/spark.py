"""The Spark engine (CINEMATCH_ENGINE=spark): silver and gold computed by Spark over the Parquet lake.

The flow of one run, behind the same gates as the DuckDB engine:

1. bronze checks in DuckDB; bronze (and, after retention pruned bronze, the old silver) exported to the lake;
2. Spark runs the transpiled silver and gold SQL (the DuckDB files are the one definition) and writes each
   table as a new, not yet visible version in the lake;
3. each layer is loaded back into the warehouse in one transaction and gated by SILVER_CHECKS / GOLD_CHECKS
   in DuckDB; only when a layer passes is its lake version published (symlink swap, or a ``_CURRENT`` pointer
   on object stores), otherwise it is rolled back and its lake version discarded.

Spark always recomputes silver in full (bronze plus the silver rows whose bronze batch is gone), which equals
the DuckDB engine's incremental merge; a rerun with nothing new does not start Spark at all.
pyspark is imported only inside functions.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from cinematch.core.errors import BadInput, CineMatchError
from cinematch.core.log import get_logger, log_event, timed
from cinematch.core.settings import Settings
from cinematch.engines.spark_lake import LakeLocation, data_files, read_version
from cinematch.lakehouse import gold as gold_layer
from cinematch.lakehouse import gold_checks, incremental, silver
from cinematch.lakehouse import sources as extras
from cinematch.lakehouse.etl import EtlRun, gate, gold_exists
from cinematch.lakehouse.quality import CheckResult, run_checks
from cinematch.storage import lake, sqlgen
from cinematch.storage.audit import new_run_id, record_run, utcnow
from cinematch.storage.warehouse import batch_table

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
from cinematch.engines.spark_session import session_conf, spark_session

log = get_logger(__name__)


INPUTS = ("bronze.ratings_buffer", "bronze.movies")


SILVER_OUTPUTS = ("silver.ratings", "silver.movies")


GOLD_OUTPUTS = tuple(f"gold.{m}" for m in gold_layer.GOLD_MODELS)


_PARTITIONED = "silver.ratings"  # by year and month of rated_at, as lake.write_table does


def model_sql() -> dict[str, str]:
    """The DuckDB SQL of every table the engine produces, keyed by warehouse table name."""
    return {
        "silver.ratings": silver.RATINGS_FULL_SQL,
        "silver.movies": silver.MOVIES_SQL,
        **{f"gold.{m}": gold_layer.load_sql(m) for m in gold_layer.GOLD_MODELS},
    }


def duckdb_schemas(con: duckdb.DuckDBPyConnection, prior_weight: float) -> dict[str, list[tuple[str, str]]]:
    """Column names and DuckDB types of every output, bound (not run) from the same SQL by DuckDB.

    Spark's types differ in places (``row_number`` is INT, ``sum`` of an INT is BIGINT where DuckDB gives
    BIGINT and HUGEINT); casting to these on the way back keeps the warehouse schema engine-independent.
    """
    params = {"as_of": None, "prior_weight": float(prior_weight)}
    out = {}
    for table, sql in model_sql().items():
        rel = con.sql(sqlgen.substitute(sql.strip().rstrip(";"), params))
        if not isinstance(rel, duckdb.DuckDBPyRelation):  # PostgreSQL's relations have no DuckDB types to bind
            raise CineMatchError("the Spark engine binds its output types with DuckDB: it needs the DuckDB warehouse")
        out[table] = [(str(c), str(t)) for c, t in zip(rel.columns, rel.types, strict=True)]
    return out


@dataclass
class SparkOutput:
    """What one Spark job wrote: a not yet published lake version per table, and the resolved as_of."""

    versions: dict[str, str] = field(default_factory=dict)
    as_of: datetime | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def compute_silver_gold(
    spark: SparkSession,
    inputs: dict[str, DataFrame],
    location: LakeLocation,
    schemas: dict[str, list[tuple[str, str]]],
    as_of: datetime | None = None,
    prior_weight: float = gold_layer.DEFAULT_PRIOR_WEIGHT,
    out: SparkOutput | None = None,
) -> SparkOutput:
    """Silver then gold in Spark, each table written as a new lake version; nothing is published here.

    ``inputs`` are DataFrames for ``bronze.ratings_buffer``, ``bronze.movies`` and ``silver.ratings`` (the
    previous silver, read only for rows whose bronze batch is gone). Silver is written first and read back, so
    gold reads the stored Parquet instead of recomputing the dedup. Versions are recorded in ``out`` as they are
    started, so a caller can discard them when the job fails halfway.
    """
    from pyspark.sql import functions as F

    out = out if out is not None else SparkOutput()
    for table, frame in inputs.items():
        frame.createOrReplaceTempView(sqlgen.view_name(table))

    def run(table: str, params: dict[str, Any] | None = None) -> DataFrame:
        # The transpiled QUALIFY adds a helper column; selecting DuckDB's columns drops it and fixes the order.
        cols = [c for c, _ in schemas[table]]
        return spark.sql(sqlgen.to_spark(model_sql()[table], params)).select(*cols)

    def write(table: str, frame: DataFrame) -> str:
        path = location.new_version(table)
        out.versions[table] = path
        t0 = time.perf_counter()
        if table == _PARTITIONED:
            frame = frame.withColumn("year", F.year("rated_at")).withColumn("month", F.month("rated_at"))
            frame.repartition("year", "month").write.partitionBy("year", "month").parquet(path)
        else:
            frame.write.parquet(path)
        out.seconds[table] = round(time.perf_counter() - t0, 3)
        return path

    for table in SILVER_OUTPUTS:
        frame = run(table)
        path = write(table, frame)
        cols = [c for c, _ in schemas[table]]
        read_version(spark, path, frame.schema).select(*cols).createOrReplaceTempView(sqlgen.view_name(table))
    if as_of is None:
        as_of = spark.table(sqlgen.view_name("silver.ratings")).agg(F.max("rated_at")).collect()[0][0]
    out.as_of = as_of
    params = {"as_of": as_of, "prior_weight": float(prior_weight)}
    for table in GOLD_OUTPUTS:
        write(table, run(table, params))
    return out


def _needs_prior_silver(con: duckdb.DuckDBPyConnection) -> bool:
    # Only retention makes silver hold rows whose bronze batch is gone; without any, the old silver adds nothing.
    return bool(
        con.execute(
            "select count(*) from silver.ratings where batch_id not in (select distinct batch_id from bronze.ratings_buffer)"
        ).fetchall()[0][0]
    )


def _from_arrow(spark: SparkSession, table: Any) -> DataFrame:
    from pyspark.sql import functions as F

    frame = spark.createDataFrame(table)
    # Arrow's naive timestamps arrive as Spark TIMESTAMP (session-local); the lake and the SQL use TIMESTAMP_NTZ.
    for name, dtype in frame.dtypes:
        if dtype == "timestamp":
            frame = frame.withColumn(name, F.col(name).cast("timestamp_ntz"))
    return frame


def stage_inputs(con: duckdb.DuckDBPyConnection, spark: SparkSession, location: LakeLocation) -> dict[str, DataFrame]:
    """Bronze (and the old silver when needed) as Spark DataFrames.

    A local lake gets ``lake/bronze/*`` Parquet from ``lake.write_table`` and Spark reads it; an object-store lake
    hands the rows over through Arrow (DuckDB needs no S3 access).
    """
    prior_cols = con.sql("select * from silver.ratings").columns
    needs_prior = _needs_prior_silver(con)
    frames: dict[str, DataFrame] = {}
    with timed(log, "spark_stage_inputs", lake=location.root, prior_silver=needs_prior):
        if location.is_local:
            for table in INPUTS:
                frames[table] = read_version(spark, str(lake.write_table(con, table, location.local_dir).resolve()))
            if needs_prior:
                link = lake.write_table(con, "silver.ratings", location.local_dir / "_staging")
                frames["silver.ratings"] = read_version(spark, str(link.resolve())).select(*prior_cols)
        else:
            for table in INPUTS:
                frames[table] = _from_arrow(spark, con.sql(f"select * from {table}").to_arrow_table())
            if needs_prior:
                frames["silver.ratings"] = _from_arrow(spark, con.sql("select * from silver.ratings").to_arrow_table())
    if "silver.ratings" not in frames:
        frames["silver.ratings"] = frames["bronze.ratings_buffer"].select(*prior_cols).limit(0)
    return frames


def _load(
    con: duckdb.DuckDBPyConnection,
    spark: SparkSession,
    location: LakeLocation,
    table: str,
    version: str,
    schema: list[tuple[str, str]],
) -> None:
    """Replace ``table`` in the warehouse by the Spark version, cast to the DuckDB engine's column types."""
    select = ", ".join(f'cast("{c}" as {t}) as "{c}"' for c, t in schema)
    nulls = ", ".join(f'cast(null as {t}) as "{c}"' for c, t in schema)
    if location.is_local:
        glob = location.duckdb_glob(version).replace("'", "''")
        # An empty partitioned write leaves no file at all; DuckDB's read_parquet would refuse the empty glob.
        has_files = any(Path(version).rglob("*.parquet"))
        source = f"read_parquet('{glob}', hive_partitioning = false)" if has_files else f"(select {nulls} where false)"
    else:
        if data_files(spark, version):
            con.register("_spark_out", read_version(spark, version).select(*[c for c, _ in schema]).toArrow())
        else:
            con.register("_spark_out", con.sql(f"select {nulls} where false").to_arrow_table())
        source = "_spark_out"
    try:
        if table == _PARTITIONED:
            # silver.ratings keeps its DDL (not-null columns): replace the rows, not the table.
            con.execute(f"delete from {table}")
            con.execute(f"insert into {table} select {select} from {source}")
        else:
            con.execute(f"create or replace table {table} as select {select} from {source}")
    finally:
        if not location.is_local:
            con.unregister("_spark_out")


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def run_etl_spark(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    full_refresh: bool = False,
    as_of: datetime | None = None,
    spark: SparkSession | None = None,
    prior_weight: float = gold_layer.DEFAULT_PRIOR_WEIGHT,
) -> EtlRun:
    """``run_etl`` on Spark: the same result document, tables, checks and ``ops.pipeline_runs`` rows.

    The lake is always written (it is how Spark and the warehouse exchange data).
    """
    run: dict[str, Any] = {"run_id": new_run_id(), "full_refresh": full_refresh, "engine": "spark", "layers": {}}
    if not math.isfinite(prior_weight) or prior_weight < 0:
        raise BadInput(f"prior_weight must be a finite number >= 0, got {prior_weight!r}")
    tol = settings.soft_check_tolerance
    as_of = _naive_utc(as_of)

    started = utcnow()
    bronze_results = run_checks(con, silver.BRONZE_CHECKS, tol)
    run["layers"]["bronze"] = {"checks": [r.to_dict() for r in bronze_results]}
    con.execute("begin transaction")
    gate(con, "bronze", bronze_results, run, started)
    con.execute("commit")

    batches = silver.new_batches(con)
    rating_batches = [b["batch_id"] for b in batches if b["kind"] == "ratings"]
    changed = bool(batches) or full_refresh or as_of is not None or not gold_exists(con)
    if not changed:
        return EtlRun(**_up_to_date(con, settings, run))

    location = LakeLocation.from_settings(settings)
    spark = spark or spark_session(settings)
    schemas = duckdb_schemas(con, prior_weight)
    t_spark = time.perf_counter()
    output = SparkOutput()
    pending = output.versions  # written but not published; published ones are popped
    try:
        inputs = stage_inputs(con, spark, location)
        with timed(log, "spark_compute", master=spark.sparkContext.master, lake=location.root) as info:
            compute_silver_gold(spark, inputs, location, schemas, as_of=as_of, prior_weight=prior_weight, out=output)
            info["tables"] = len(output.versions)
        run["spark_seconds"] = round(time.perf_counter() - t_spark, 3)
        run["spark_write_seconds"] = dict(output.seconds)
        versions = dict(output.versions)
        run["lake"] = {}
        for layer, tables in (("silver", SILVER_OUTPUTS), ("gold", GOLD_OUTPUTS)):
            started, t0 = utcnow(), time.perf_counter()
            con.execute("begin transaction")
            for table in tables:
                _load(con, spark, location, table, versions[table], schemas[table])
            # the extra sources (sessions, TMDB) are small: DuckDB builds them next to Spark's tables
            if layer == "silver":
                silver.mark_processed(con, batches, full_refresh)
                extra_rows, _ = extras.build_silver(con, batches, full_refresh)
                checks = (*silver.SILVER_CHECKS, *extras.silver_checks())
            else:
                incremental.drop_states(con)  # they follow DuckDB's gold builds, not Spark's
                extra_rows = extras.build_gold(con, as_of)
                checks = (*gold_checks.GOLD_CHECKS, *extras.gold_checks())
            results = run_checks(con, checks, tol)
            gate(con, layer, results, run, started)
            info = _layer_info(con, layer, batches, rating_batches, full_refresh, results, t0, run["spark_seconds"])
            info["rows"].update(extra_rows)
            rows = info["rows"]["ratings"] if layer == "silver" else sum(info["rows"].values())
            record_run(con, "etl", layer, started, "completed", rows, info, run["run_id"])
            con.execute("commit")
            for table in tables:
                run["lake"][table] = location.publish(spark, table, pending.pop(table))
            run["layers"][layer] = info
    except BaseException:
        # A gate has rolled back already; any other failure may have left its layer's transaction open.
        with contextlib.suppress(duckdb.Error):
            con.execute("rollback")
        for version in list(pending.values()):
            location.discard(spark, version)
        raise
    run["new_batches"] = [b["batch_id"] for b in batches]
    run["placeholders"] = run["layers"]["silver"]["rows"]["placeholders"]
    run["as_of"] = run["layers"]["gold"]["as_of"]
    run["up_to_date"] = False
    run["status"] = "completed"
    log_event(log, "spark_etl", as_of=run["as_of"], new_batches=len(batches), spark_seconds=run["spark_seconds"])
    return EtlRun(**run)


def _layer_info(
    con: duckdb.DuckDBPyConnection,
    layer: str,
    batches: list[dict[str, Any]],
    rating_batches: list[str],
    full_refresh: bool,
    results: list[CheckResult],
    t0: float,
    spark_seconds: float,
) -> dict[str, Any]:
    checks = [r.to_dict() for r in results]
    if layer == "silver":
        counts = silver.silver_counts(con)
        if full_refresh:
            merged = counts["ratings"]
        elif rating_batches:
            # The rows of the new batches that won the dedup: what the DuckDB engine's incremental merge reports.
            batch_table(con, "_wanted", rating_batches)
            merged = con.execute(
                "select count(*) from silver.ratings where batch_id in (select batch_id from _wanted)"
            ).fetchall()[0][0]
        else:
            merged = 0
        return {"rows": counts, "merged": merged, "batches": [b["batch_id"] for b in batches], "engine": "spark",
                "seconds": round(time.perf_counter() - t0, 3), "spark_seconds": spark_seconds, "checks": checks}  # fmt: skip
    rows = {m: con.execute(f"select count(*) from gold.{m}").fetchall()[0][0] for m in gold_layer.GOLD_MODELS}
    resolved = con.execute("select max(as_of) from gold.movie_kpis").fetchall()[0][0]
    return {"rows": rows, "as_of": resolved, "engine": "spark", "seconds": round(time.perf_counter() - t0, 3),
            "checks": checks}  # fmt: skip


def _up_to_date(con: duckdb.DuckDBPyConnection, settings: Settings, run: dict[str, Any]) -> dict[str, Any]:
    """Nothing new since the last run: re-check silver in DuckDB, as the DuckDB engine does, and skip Spark."""
    started, t0 = utcnow(), time.perf_counter()
    con.execute("begin transaction")
    results = run_checks(con, silver.SILVER_CHECKS, settings.soft_check_tolerance)
    gate(con, "silver", results, run, started)
    counts = silver.silver_counts(con)
    info = {"rows": counts, "merged": 0, "batches": [], "engine": "spark", "seconds": round(time.perf_counter() - t0, 3),
            "checks": [r.to_dict() for r in results]}  # fmt: skip
    record_run(con, "etl", "silver", started, "completed", counts["ratings"], info, run["run_id"])
    con.execute("commit")
    run["layers"]["silver"] = info
    run["new_batches"] = []
    run["placeholders"] = counts["placeholders"]
    run["layers"]["gold"] = {"skipped": True, "reason": "no new batches since the last run"}
    run["up_to_date"] = True
    run["status"] = "completed"
    return run


__all__ = [
    "GOLD_OUTPUTS",
    "INPUTS",
    "SILVER_OUTPUTS",
    "SparkOutput",
    "compute_silver_gold",
    "duckdb_schemas",
    "model_sql",
    "run_etl_spark",
    "session_conf",
    "spark_session",
    "stage_inputs",
]
