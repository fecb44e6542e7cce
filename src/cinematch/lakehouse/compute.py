"""The compute behind `cinematch etl`: who builds silver and gold, and how the lake is written.

``lakehouse/etl.py`` owns the one ETL flow (checks, gates, transactions, ``ops.pipeline_runs``, the up-to-date
decision, the result document); a ``LakehouseCompute`` supplies the layer computations inside it. ``InProcessCompute``
is the default: DuckDB or PostgreSQL merge silver incrementally, build gold (by the affected keys when they can)
and write the Parquet lake after gold. The Spark engine (``cinematch.engines.spark.SparkCompute``) is the other
implementation; ``pipelines/engine.py`` chooses between them.

One compute instance serves one run: it may keep state between its steps (the partitions silver touched, the
lake versions not yet published).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from cinematch.core.settings import Settings
from cinematch.lakehouse import gold as gold_layer
from cinematch.lakehouse import sources as extras
from cinematch.lakehouse.silver import build_silver
from cinematch.storage import lake
from cinematch.storage.protocol import Warehouse

SILVER_TABLES = ("silver.ratings", "silver.movies")

# when the last gold build finished (the epoch before the first)
LAST_GOLD = """coalesce((select max(finished_at) from ops.pipeline_runs
                         where pipeline = 'etl' and step = 'gold' and status = 'completed'),
                        timestamp '1970-01-01')"""


@dataclass
class EtlScope:
    """What the flow knows about one run, handed to the compute's steps."""

    settings: Settings
    run_id: str
    full_refresh: bool
    as_of: datetime | None  # the logical date, as the compute's ``logical_date`` normalised it
    write_lake: bool
    batches: list[dict[str, Any]]  # the new bronze batches (batch_id, kind), detected after the bronze gate
    last_gold: str | None = None  # run id of the last completed gold build, read once silver committed
    gold_behind: bool = False  # an earlier run's silver batches never reached gold (a kill between the commits)


@dataclass
class SilverBuild:
    """What a compute's silver step did, for the flow's checks and result document."""

    rows: dict[str, int]  # silver.ratings, silver.movies and placeholders (silver.silver_counts)
    merged: int  # rows of the new batches that went into silver.ratings
    batches: list[dict[str, Any]]  # the batches silver took in (batch_id, kind), in ingestion order
    checked: list[str] | None  # the silver checks look only at these batches' rows; None: at every row


class LakehouseCompute(Protocol):
    """The layer computations of one ETL run; the flow calls them in this order.

    ``skips_unchanged_silver``: with nothing new (no batch, no full refresh, no logical date, gold present) the
    flow decides "up to date" before silver and only re-checks it (the compute is never prepared: Spark is not
    started). Otherwise silver is built every run and the decision comes after it, so data a source took in
    without a batch (TMDB responses) and a gold left behind by a kill also rebuild gold.
    """

    skips_unchanged_silver: bool

    def logical_date(self, as_of: datetime | None) -> datetime | None:
        """``as_of`` as this compute hands it to the gold builds (Spark: naive UTC)."""
        ...

    def prepare(self, con: Warehouse, scope: EtlScope) -> None:
        """Work before the silver transaction once the run will build (Spark: stage the inputs, run the job)."""
        ...

    def build_silver(self, con: Warehouse, scope: EtlScope) -> SilverBuild:
        """silver.ratings, silver.movies and silver.processed_batches, inside the flow's silver transaction."""
        ...

    def build_gold(self, con: Warehouse, scope: EtlScope) -> dict[str, int]:
        """Every gold model, inside the flow's gold transaction; returns rows per model."""
        ...

    def layer_info(self, layer: str, info: dict[str, Any]) -> dict[str, Any]:
        """A layer's result (and ``ops.pipeline_runs`` details) with this compute's own fields added."""
        ...

    def publish(self, layer: str) -> None:
        """After a layer committed: make what the compute wrote for it outside the warehouse visible."""
        ...

    def discard(self) -> None:
        """The run failed: drop whatever is written but not published."""
        ...

    def finish(self, con: Warehouse, scope: EtlScope, gold_built: bool) -> dict[str, Any]:
        """After the last commit: the run's extra result fields (``lake``, ``engine``, timings)."""
        ...


def partitions(con: Warehouse, relation: str, params: list[str] | None = None) -> set[tuple[int, int]]:
    """The (year, month) partitions of silver.ratings that the rows of ``relation`` fall in."""
    rows = con.execute(f"select distinct year(rated_at), month(rated_at) from {relation}", params).fetchall()
    return {(int(y), int(m)) for y, m in rows}


def changed_partitions(con: Warehouse, batch_ids: list[str]) -> set[tuple[int, int]]:
    """(year, month) partitions of silver.ratings that this run's batches touched.

    A replaced rating shares its key, rated_at included, with its replacement: same partition.
    """
    if not batch_ids:
        return set()
    marks = ", ".join("?" for _ in batch_ids)
    return partitions(con, f"silver.ratings where batch_id in ({marks})", batch_ids)


def retention_since_gold(con: Warehouse) -> bool:
    """Whether retention deleted rows after the last gold build: gold's stored sums then count ratings that
    silver no longer has, so gold is rebuilt whole rather than merged."""
    rows = con.execute(
        f"""select count(*) from ops.pipeline_runs where pipeline = 'retention' and status = 'completed' and rows > 0
            and finished_at > {LAST_GOLD}"""
    ).fetchall()
    return bool(rows[0][0] > 0)


def scoped_batches(pending: list[dict[str, Any]], full_refresh: bool, as_of: datetime | None) -> list[str] | None:
    """The new ratings batches when gold may be rebuilt by affected keys only, else None (rebuild whole).

    New movies change genres of old ratings, and a logical date moves every window: both rebuild whole.
    """
    if full_refresh or as_of is not None or any(b["kind"] == "movies" for b in pending):
        return None
    return [b["batch_id"] for b in pending if b["kind"] == "ratings"]


def write_lake(
    con: Warehouse,
    settings: Settings,
    changed: set[tuple[int, int]] | None,
    gold_run: str,
    append_batches: list[str] | None = None,
) -> dict[str, str]:
    """Write every lake table, then mark it in sync.

    silver.ratings: only the ``changed`` partitions are rewritten when given, and the rows of
    ``append_batches`` are added to the others as new files (lake.write_table).
    """
    tables = [*SILVER_TABLES, *(f"gold.{m}" for m in gold_layer.GOLD_MODELS), *extras.lake_tables()]
    written = {}
    for t in tables:
        ratings = t == "silver.ratings"
        path = lake.write_table(
            con, t, settings.lake_dir, changed if ratings else None, append_batches if ratings else None
        )
        written[t] = str(path)
    lake.mark_synced(settings.lake_dir, gold_run)
    return written


class InProcessCompute:
    """Silver and gold computed by the warehouse itself (DuckDB or PostgreSQL), the lake written after gold.

    Silver merges only the new batches; gold is rebuilt by the keys they touch when nothing else changed; the
    lake rewrites only the partitions the run touched. ``write_lake=False`` leaves the lake alone.
    """

    skips_unchanged_silver = False

    def __init__(self) -> None:
        self._pending: list[dict[str, Any]] = []
        self._batch_ids: list[str] = []
        self._replaced = False
        self._rewrite: set[tuple[int, int]] | None = None

    def logical_date(self, as_of: datetime | None) -> datetime | None:
        return as_of  # gold.build_gold normalises it itself

    def prepare(self, con: Warehouse, scope: EtlScope) -> None:
        return None

    def build_silver(self, con: Warehouse, scope: EtlScope) -> SilverBuild:
        silver = build_silver(con, full_refresh=scope.full_refresh)
        self._pending, self._replaced, self._batch_ids = silver["pending"], silver["replaced"], silver["batches"]
        # lake partitions holding a replaced rating are rewritten; new ratings elsewhere are appended as new files
        self._rewrite = partitions(con, "_silver_replaced") if self._replaced else None
        # incremental runs check the new batches' rows (unchanged rows passed before); full refreshes check all
        checked = None if scope.full_refresh else [b["batch_id"] for b in self._pending if b["kind"] == "ratings"]
        return SilverBuild(silver["rows"], silver["merged"], self._pending, checked)

    def build_gold(self, con: Warehouse, scope: EtlScope) -> dict[str, int]:
        whole = scope.gold_behind or retention_since_gold(con)
        scoped = None if whole else scoped_batches(self._pending, scope.full_refresh, scope.as_of)
        return gold_layer.build_gold(con, as_of=scope.as_of, new_batches=scoped, replaced=self._replaced)

    def layer_info(self, layer: str, info: dict[str, Any]) -> dict[str, Any]:
        return info

    def publish(self, layer: str) -> None:
        return None  # the lake is written whole after gold (finish)

    def discard(self) -> None:
        return None

    def finish(self, con: Warehouse, scope: EtlScope, gold_built: bool) -> dict[str, Any]:
        # a run killed after its silver commit left the lake behind gold: catch up even with nothing new
        lake_behind = scope.write_lake and lake.synced_run(scope.settings.lake_dir) != scope.last_gold
        if not gold_built:
            if lake_behind and scope.last_gold is not None:
                return {"lake": write_lake(con, scope.settings, None, scope.last_gold)}
            return {}
        if not scope.write_lake:
            return {}
        t0 = time.perf_counter()
        # then the lake is rewritten whole, not by the new batches
        whole = scope.full_refresh or lake_behind or scope.gold_behind
        append = None if whole or self._rewrite is None else self._batch_ids
        changed = None if whole else self._rewrite if append else changed_partitions(con, self._batch_ids)
        written = write_lake(con, scope.settings, changed, scope.run_id, append)
        return {"lake": written, "lake_seconds": round(time.perf_counter() - t0, 3)}
