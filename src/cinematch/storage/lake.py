"""The Parquet lake under CINEMATCH_HOME/lake: whole-table versions swapped in atomically."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cinematch.core.errors import CineMatchError
from cinematch.core.log import get_logger, timed
from cinematch.storage import sqlgen
from cinematch.storage.audit import new_run_id
from cinematch.storage.protocol import Warehouse

log = get_logger(__name__)

# Tables worth partitioning by time, and the expression that gives the partition columns.
PARTITIONS = {
    "silver.ratings": ("year(rated_at) as year, month(rated_at) as month", "year, month"),
}


def table_path(lake_dir: Path, table: str) -> Path:
    """``silver.ratings`` → ``lake/silver/ratings`` (a symlink to the current version)."""
    schema, name = table.split(".")
    return lake_dir / schema / name


def write_table(
    con: Warehouse,
    table: str,
    lake_dir: Path,
    changed: set[tuple[int, int]] | None = None,
    append_batches: list[str] | None = None,
) -> Path:
    """Write ``table`` as Parquet into a new version folder, then swap the table's symlink to it.

    The rename of a symlink is atomic, so a reader that resolves the path sees the old version or the
    new one, never half a partition. Old versions are removed after the swap. For a partitioned table,
    ``changed`` (year, month) partitions are rewritten and the others hard-linked from the current version,
    so an incremental run writes only what it touched. ``append_batches``: the rows of these batches (which
    replaced no row outside ``changed``) go into new files beside the hard-linked ones of their partitions.
    """
    link = table_path(lake_dir, table)
    link.parent.mkdir(parents=True, exist_ok=True)
    version = link.parent / f".{link.name}-{new_run_id()}"
    extra, partition_by = PARTITIONS.get(table, ("", ""))
    select = f"select *{', ' + extra if extra else ''} from {table}"
    current = link.resolve() if link.is_symlink() and link.exists() else None
    with timed(log, "lake_write", table=table) as info:
        if partition_by and changed is not None and current is not None:
            version.mkdir()
            if changed:
                pairs = ", ".join(f"({int(y)}, {int(m)})" for y, m in sorted(changed))
                con.execute(
                    f"copy (select * from ({select}) as t where (year, month) in ({pairs})) to '{version}' "
                    f"(format parquet, partition_by ({partition_by}), overwrite_or_ignore)"
                )
            reused = _link_unchanged(current, version, changed)
            if append_batches:
                batches = ", ".join(sqlgen.literal(b) for b in append_batches)
                keep = f" and (year, month) not in ({pairs})" if changed else ""
                # APPEND adds uniquely named files to the partition folders the links just made
                con.execute(
                    f"copy (select * from ({select}) as t where batch_id in ({batches}){keep}) to '{version}' "
                    f"(format parquet, partition_by ({partition_by}), append)"
                )
            info.update(rewritten=len(changed), reused=reused, appended=bool(append_batches))
        elif partition_by:
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


def _link_unchanged(current: Path, version: Path, changed: set[tuple[int, int]]) -> int:
    """Hard-link the files of every partition not in ``changed`` from ``current`` into ``version``."""
    reused = 0
    for month_dir in current.glob("year=*/month=*"):
        year, month = int(month_dir.parent.name.split("=")[1]), int(month_dir.name.split("=")[1])
        if (year, month) in changed:
            continue
        target = version / month_dir.parent.name / month_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for f in month_dir.iterdir():
            _check_parquet(f)  # a damaged file must not be carried into every later version
            os.link(f, target / f.name)
        reused += 1
    return reused


def _check_parquet(path: Path) -> None:
    try:
        pq.read_metadata(path)
    except (OSError, pa.ArrowException) as exc:
        raise CineMatchError(
            f"lake file {path} is damaged ({' '.join(str(exc).split())[:120]}); "
            "rewrite the lake with `cinematch etl --full-refresh`"
        ) from None


def read_glob(lake_dir: Path, table: str) -> str:
    """A glob that DuckDB/Spark can read for ``table`` (hive partitions included)."""
    return str(table_path(lake_dir, table) / "**" / "*.parquet")


SYNCED = "_SYNCED"


def synced_run(lake_dir: Path) -> str | None:
    """The ETL run whose gold the lake holds (None before the first complete lake write)."""
    path = lake_dir / SYNCED
    return path.read_text().strip() or None if path.is_file() else None


def mark_synced(lake_dir: Path, run_id: str) -> None:
    """Record, atomically, that every lake table now matches the gold of ``run_id``."""
    lake_dir.mkdir(parents=True, exist_ok=True)
    tmp = lake_dir / f".{SYNCED}.tmp"
    tmp.write_text(run_id + "\n")
    os.replace(tmp, lake_dir / SYNCED)
