"""Silver layer: typed, deduplicated ratings and one conformed row per movie, with its checks."""

from __future__ import annotations

from typing import Any

from cinematch.core.log import get_logger, timed
from cinematch.lakehouse.quality import Check
from cinematch.lakehouse.sql import checks as checks_sql
from cinematch.lakehouse.sql import silver as silver_sql
from cinematch.storage.protocol import Warehouse
from cinematch.storage.warehouse import batch_table

log = get_logger(__name__)


# RATINGS_FULL_SQL and MOVIES_SQL are the one definition of silver for both engines: DuckDB runs them as they are,
# the Spark engine (cinematch.engines.spark) runs them transpiled by sqlglot.
RATINGS_FULL_SQL = silver_sql.read("ratings_full")
MOVIES_SQL = silver_sql.read("movies")
# An incremental merge: the new batches' rows (temp table _wanted), then the silver rows they replace.
RATINGS_NEW_SQL = silver_sql.read("ratings_new")
RATINGS_REPLACED_SQL = silver_sql.read("ratings_replaced")


def new_batches(con: Warehouse) -> list[dict[str, Any]]:
    """Completed bronze batches that silver has not processed yet, in ingestion order."""
    rows = con.execute(
        """select m.batch_id, m.kind from bronze.ingestion_metadata m
           where m.status = 'completed' and m.batch_id not in (select batch_id from silver.processed_batches)
           order by m.ingestion_date, m.batch_id"""
    ).fetchall()
    return [{"batch_id": b, "kind": k} for b, k in rows]


def build_silver(con: Warehouse, full_refresh: bool = False) -> dict[str, Any]:
    """Bring silver up to date (inside the caller's transaction); returns counts.

    Incremental runs merge only unprocessed batches: a key that already exists is replaced by the newer
    ingestion, exactly as the full refresh's "latest ingestion wins" rule would decide.
    """
    batches = new_batches(con)
    rating_batches = [b["batch_id"] for b in batches if b["kind"] == "ratings"]
    con.execute("drop table if exists _silver_replaced")
    replaced = False
    with timed(log, "silver_build", full_refresh=full_refresh, new_batches=len(batches)) as info:
        if full_refresh:
            con.execute(f"create or replace temp table _silver_full as {RATINGS_FULL_SQL}")
            con.execute("delete from silver.ratings")
            con.execute("insert into silver.ratings select * from _silver_full")
            con.execute("drop table _silver_full")
            merged = con.execute("select count(*) from silver.ratings").fetchall()[0][0]
        elif rating_batches:
            batch_table(con, "_wanted", rating_batches)
            con.execute(f"create or replace temp table _new as\n{RATINGS_NEW_SQL}")
            # the rows about to be replaced: incremental gold subtracts them (gold/incremental.py, MERGES)
            con.execute(f"create or replace temp table _silver_replaced as\n{RATINGS_REPLACED_SQL}")
            replaced = True
            # keys are unique in silver: deleting the rows just found is the one join against the table
            con.execute(
                """delete from silver.ratings s using _silver_replaced r
                   where s.user_id = r.user_id and s.movie_id = r.movie_id and s.rated_at = r.rated_at"""
            )
            con.execute("insert into silver.ratings select * from _new")
            merged = con.execute("select count(*) from _new").fetchall()[0][0]
            con.execute("drop table _new")
        else:
            merged = 0
        con.execute(f"create or replace table silver.movies as {MOVIES_SQL}")
        mark_processed(con, batches, full_refresh)
        counts = silver_counts(con)
        info.update(counts, merged=merged)
    # "pending": the batches this run took in, with their kinds (the caller hands them to the other sources)
    # "replaced": whether the temp table _silver_replaced holds the rows this run's batches replaced
    return {"rows": counts, "merged": merged, "batches": [b["batch_id"] for b in batches], "pending": batches,
            "replaced": replaced}  # fmt: skip


def mark_processed(con: Warehouse, batches: list[dict[str, Any]], full_refresh: bool) -> None:
    """Record ``batches`` in silver.processed_batches; a full refresh re-records every completed batch."""
    processed = batches
    if full_refresh:
        con.execute("delete from silver.processed_batches")
        processed = [
            {"batch_id": b, "kind": k}
            for b, k in con.execute(
                "select batch_id, kind from bronze.ingestion_metadata where status = 'completed'"
            ).fetchall()
        ]
    if processed:
        con.executemany(
            """insert into silver.processed_batches
               select ?, ?, (select count(*) from bronze.ratings_buffer where batch_id = ?), now()::timestamp""",
            [[b["batch_id"], b["kind"], b["batch_id"]] for b in processed],
        )


def silver_counts(con: Warehouse) -> dict[str, int]:
    """Rows of silver.ratings and silver.movies, and how many movies are placeholders."""
    return dict(
        zip(
            ("ratings", "movies", "placeholders"),
            con.execute(
                """select (select count(*) from silver.ratings), (select count(*) from silver.movies),
                          (select count(*) from silver.movies where is_placeholder)"""
            ).fetchall()[0],
            strict=True,
        )
    )


BRONZE_CHECKS: tuple[Check, ...] = (
    Check(
        "ratings_buffer.batch_counts_match_audit",
        "bronze.ratings_buffer",
        checks_sql.read("bronze", "ratings_buffer.batch_counts_match_audit"),
        description="every completed batch holds exactly the rows its audit row counts",
    ),
    Check(
        "quarantine.share",
        "bronze.ratings_buffer",
        checks_sql.read("bronze", "quarantine.share"),
        severity="soft",
        description="quarantined rows stay a small share of what was loaded",
    ),
)

SILVER_CHECKS: tuple[Check, ...] = (
    Check(
        "ratings.unique_key",
        "silver.ratings",
        checks_sql.read("silver", "ratings.unique_key"),
        description="one row per (user_id, movie_id, rated_at)",
        new_rows_sql=checks_sql.read("silver", "ratings.unique_key.new_rows"),
    ),
    Check(
        "ratings.not_null",
        "silver.ratings",
        checks_sql.read("silver", "ratings.not_null"),
        new_rows_sql=checks_sql.read("silver", "ratings.not_null.new_rows"),
    ),
    Check(
        "ratings.rating_range_half_steps",
        "silver.ratings",
        checks_sql.read("silver", "ratings.rating_range_half_steps"),
        description="ratings are 0.5-5.0 in half steps",
        new_rows_sql=checks_sql.read("silver", "ratings.rating_range_half_steps.new_rows"),
    ),
    Check(
        "ratings.movie_exists",
        "silver.ratings",
        checks_sql.read("silver", "ratings.movie_exists"),
        description="relationship: every rating's movie is in silver.movies",
        new_rows_sql=checks_sql.read("silver", "ratings.movie_exists.new_rows"),
    ),
    Check(
        "ratings.reconcile_bronze",
        "silver.ratings",
        checks_sql.read("silver", "ratings.reconcile_bronze"),
        description="no processed bronze key is missing from silver",
        # a new batch is the newest ingestion of its keys, so in silver they carry a new batch's id
        new_rows_sql=checks_sql.read("silver", "ratings.reconcile_bronze.new_rows"),
    ),
    Check(
        "movies.unique_key",
        "silver.movies",
        checks_sql.read("silver", "movies.unique_key"),
    ),
    Check(
        "movies.placeholder_share",
        "silver.movies",
        checks_sql.read("silver", "movies.placeholder_share"),
        severity="soft",
        description="movies referenced by ratings but described by no movies file",
    ),
)
