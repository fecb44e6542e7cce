"""The Parquet lake under CINEMATCH_HOME/lake: whole-table versions swapped in atomically."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb

from cinematch._log import get_logger, timed
from cinematch.warehouse import new_run_id

log = get_logger(__name__)

# Tables worth partitioning by time, and the expression that gives the partition columns.
PARTITIONS = {
    "silver.ratings": ("year(rated_at) as year, month(rated_at) as month", "year, month"),
}


def table_path(lake_dir: Path, table: str) -> Path:
    """``silver.ratings`` → ``lake/silver/ratings`` (a symlink to the current version)."""
    schema, name = table.split(".")
    return lake_dir / schema / name


def write_table(con: duckdb.DuckDBPyConnection, table: str, lake_dir: Path) -> Path:
    """Write ``table`` as Parquet into a new version folder, then swap the table's symlink to it.

    The rename of a symlink is atomic, so a reader that resolves the path sees the old version or the
    new one, never half a partition. Old versions are removed after the swap.
    """
    link = table_path(lake_dir, table)
    link.parent.mkdir(parents=True, exist_ok=True)
    version = link.parent / f".{link.name}-{new_run_id()}"
    extra, partition_by = PARTITIONS.get(table, ("", ""))
    select = f"select *{', ' + extra if extra else ''} from {table}"
    with timed(log, "lake_write", table=table) as info:
        if partition_by:
            con.execute(f"copy ({select}) to '{version}' (format parquet, partition_by ({partition_by}))")
        else:
            version.mkdir()
            con.execute(f"copy ({select}) to '{version / 'part-0.parquet'}' (format parquet)")
        tmp_link = link.parent / f".{link.name}.link-{version.name}"
        os.symlink(version.name, tmp_link)
        os.replace(tmp_link, link)
        info["version"] = version.name
    for old in link.parent.glob(f".{link.name}-*"):
        if old.name != version.name:
            shutil.rmtree(old, ignore_errors=True)
    return link


def read_glob(lake_dir: Path, table: str) -> str:
    """A glob that DuckDB/Spark can read for ``table`` (hive partitions included)."""
    return str(table_path(lake_dir, table) / "**" / "*.parquet")
