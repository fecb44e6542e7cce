"""The Spark engine (CINEMATCH_ENGINE=spark): ``SparkCompute``, silver and gold computed by Spark over the lake.

``SparkCompute`` is the lakehouse's compute protocol (``lakehouse/compute.py``) on Spark; the run itself, with
its gates, transactions and result document, is ``lakehouse.etl.run_etl``, the same flow as the in-process
engine. What Spark supplies to it:

1. ``prepare``: bronze (and, after retention pruned bronze, the old silver) exported to the lake; Spark runs the
   transpiled silver and gold SQL (the DuckDB files are the one definition) and writes each table as a new, not
   yet visible version in the lake;
2. ``build_silver`` / ``build_gold``: each layer's versions loaded back into the warehouse inside the flow's
   transaction, gated there by SILVER_CHECKS / GOLD_CHECKS;
3. ``publish``: only once a layer passed and committed is its lake version published (symlink swap, or a
   ``_CURRENT`` pointer on object stores); ``discard``: otherwise its lake version is deleted.

Spark always recomputes silver in full (bronze plus the silver rows whose bronze batch is gone), which equals
the in-process incremental merge; a rerun with nothing new does not start Spark at all (``skips_unchanged_silver``).
pyspark is imported only inside functions.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from cinematch.core.errors import BadInput, CineMatchError
from cinematch.core.log import get_logger, log_event, timed
from cinematch.engines.spark_lake import LakeLocation, data_files, read_version
from cinematch.engines.spark_session import session_conf, spark_session
from cinematch.lakehouse import gold as gold_layer
from cinematch.lakehouse import incremental, silver
from cinematch.lakehouse.compute import EtlScope, SilverBuild
from cinematch.storage import lake, sqlgen
from cinematch.storage.audit import naive_utc
from cinematch.storage.protocol import Warehouse
from cinematch.storage.warehouse import batch_table

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

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


def duckdb_schemas(con: Warehouse, prior_weight: float) -> dict[str, list[tuple[str, str]]]:
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


def _needs_prior_silver(con: Warehouse) -> bool:
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


def stage_inputs(con: Warehouse, spark: SparkSession, location: LakeLocation) -> dict[str, DataFrame]:
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
    con: Warehouse,
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


class SparkCompute:
    """The lakehouse compute on Spark (``lakehouse/compute.py``), for one run of ``lakehouse.etl.run_etl``.

    ``prepare`` stages bronze and runs one Spark job that writes silver and gold as unpublished lake versions;
    each layer is then loaded into the warehouse inside the flow's transaction, and its versions are published
    once the layer's gate passed and it committed, or deleted when the run fails. The lake is always written
    (``write_lake`` does not apply: it is how Spark and the warehouse exchange data). With nothing new the flow
    only re-checks silver and Spark is never started.
    """

    skips_unchanged_silver = True

    def __init__(self, spark: SparkSession | None = None, prior_weight: float = gold_layer.DEFAULT_PRIOR_WEIGHT):
        if not math.isfinite(prior_weight) or prior_weight < 0:
            raise BadInput(f"prior_weight must be a finite number >= 0, got {prior_weight!r}")
        self.prior_weight = prior_weight
        self._spark = spark
        self._location: LakeLocation | None = None
        self._schemas: dict[str, list[tuple[str, str]]] = {}
        self._output = SparkOutput()
        self._published: dict[str, str] = {}
        self._spark_seconds: float | None = None

    def logical_date(self, as_of: datetime | None) -> datetime | None:
        return naive_utc(as_of)

    def prepare(self, con: Warehouse, scope: EtlScope) -> None:
        self._location = location = LakeLocation.from_settings(scope.settings)
        self._spark = spark = self._spark or spark_session(scope.settings)
        self._schemas = duckdb_schemas(con, self.prior_weight)
        t0 = time.perf_counter()
        inputs = stage_inputs(con, spark, location)
        with timed(log, "spark_compute", master=spark.sparkContext.master, lake=location.root) as info:
            compute_silver_gold(spark, inputs, location, self._schemas, as_of=scope.as_of,
                                prior_weight=self.prior_weight, out=self._output)  # fmt: skip
            info["tables"] = len(self._output.versions)
        self._spark_seconds = round(time.perf_counter() - t0, 3)

    def _load_layer(self, con: Warehouse, tables: tuple[str, ...]) -> None:
        assert self._spark is not None and self._location is not None, "prepare() runs first"
        for table in tables:
            _load(con, self._spark, self._location, table, self._output.versions[table], self._schemas[table])

    def build_silver(self, con: Warehouse, scope: EtlScope) -> SilverBuild:
        self._load_layer(con, SILVER_OUTPUTS)
        silver.mark_processed(con, scope.batches, scope.full_refresh)
        counts = silver.silver_counts(con)
        rating_batches = [b["batch_id"] for b in scope.batches if b["kind"] == "ratings"]
        if scope.full_refresh:
            merged = counts["ratings"]
        elif rating_batches:
            # The rows of the new batches that won the dedup: what the in-process incremental merge reports.
            batch_table(con, "_wanted", rating_batches)
            merged = con.execute(
                "select count(*) from silver.ratings where batch_id in (select batch_id from _wanted)"
            ).fetchall()[0][0]
        else:
            merged = 0
        # Spark replaced the whole table, so every row is checked (None), not only the new batches' rows
        return SilverBuild(counts, merged, scope.batches, None)

    def build_gold(self, con: Warehouse, scope: EtlScope) -> dict[str, int]:
        self._load_layer(con, GOLD_OUTPUTS)
        incremental.drop_states(con)  # they follow the in-process gold builds, not Spark's
        return {m: con.execute(f"select count(*) from gold.{m}").fetchall()[0][0] for m in gold_layer.GOLD_MODELS}

    def layer_info(self, layer: str, info: dict[str, Any]) -> dict[str, Any]:
        """``engine`` before ``seconds``, and silver's ``spark_seconds`` after it once the job ran."""
        out: dict[str, Any] = {}
        for key, value in info.items():
            if key == "seconds":
                out["engine"] = "spark"
            out[key] = value
            if key == "seconds" and layer == "silver" and self._spark_seconds is not None:
                out["spark_seconds"] = self._spark_seconds
        return out

    def publish(self, layer: str) -> None:
        assert self._spark is not None and self._location is not None, "prepare() runs first"
        for table in SILVER_OUTPUTS if layer == "silver" else GOLD_OUTPUTS:
            self._published[table] = self._location.publish(self._spark, table, self._output.versions.pop(table))

    def discard(self) -> None:
        if self._spark is None or self._location is None:
            return
        for version in list(self._output.versions.values()):
            self._location.discard(self._spark, version)

    def finish(self, con: Warehouse, scope: EtlScope, gold_built: bool) -> dict[str, Any]:
        if self._spark_seconds is None:
            return {"engine": "spark"}  # up to date: Spark never ran
        if gold_built:
            log_event(log, "spark_etl", as_of=self._output.as_of, new_batches=len(scope.batches),
                      spark_seconds=self._spark_seconds)  # fmt: skip
        return {"engine": "spark", "spark_seconds": self._spark_seconds,
                "spark_write_seconds": dict(self._output.seconds), "lake": dict(self._published)}  # fmt: skip


__all__ = [
    "GOLD_OUTPUTS",
    "INPUTS",
    "SILVER_OUTPUTS",
    "SparkCompute",
    "SparkOutput",
    "compute_silver_gold",
    "duckdb_schemas",
    "model_sql",
    "session_conf",
    "spark_session",
    "stage_inputs",
]
