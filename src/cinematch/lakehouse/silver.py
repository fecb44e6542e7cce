"""Silver layer: typed, deduplicated ratings and one conformed row per movie, with its checks."""

from __future__ import annotations

import duckdb

from cinematch.core.log import get_logger, timed
from cinematch.lakehouse.quality import Check
from cinematch.storage.warehouse import batch_table

log = get_logger(__name__)

# The newest ingestion of a (user, movie, time) key wins; batch_id breaks ties so reruns agree.
_LATEST = "row_number() over (partition by user_id, movie_id, rated_at order by ingested_at desc, batch_id desc) = 1"

# RATINGS_FULL_SQL and MOVIES_SQL are the one definition of silver for both engines: DuckDB runs them as they are,
# the Spark engine (cinematch.engines.spark) runs them transpiled by sqlglot.
RATINGS_FULL_SQL = f"""
with buffer as (
    select user_id, movie_id, rating, rated_at, batch_id, ingested_at from bronze.ratings_buffer
),
pruned as (
    -- rows whose bronze batch was removed by retention stay in silver: a full refresh must not lose them
    select s.* from silver.ratings s
    where s.batch_id not in (select distinct batch_id from bronze.ratings_buffer)
),
unioned as (
    select * from buffer
    union all
    select * from pruned
),
final as (
    select * from unioned qualify {_LATEST}
)
select * from final
"""

MOVIES_SQL = """
with described as (
    select movie_id, title, genres, release_year
    from bronze.movies
    qualify row_number() over (partition by movie_id order by ingested_at desc, batch_id desc) = 1
),
referenced as (
    select distinct movie_id from silver.ratings
),
placeholders as (
    select r.movie_id, 'Unknown movie ' || r.movie_id as title, cast([] as varchar[]) as genres,
           cast(null as integer) as release_year
    from referenced r anti join described d using (movie_id)
),
final as (
    select movie_id, title, coalesce(genres, cast([] as varchar[])) as genres, release_year, false as is_placeholder
    from described
    union all
    select movie_id, title, genres, release_year, true as is_placeholder from placeholders
)
select * from final order by movie_id
"""


def new_batches(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Completed bronze batches that silver has not processed yet, in ingestion order."""
    rows = con.execute(
        """select m.batch_id, m.kind from bronze.ingestion_metadata m
           where m.status = 'completed' and m.batch_id not in (select batch_id from silver.processed_batches)
           order by m.ingestion_date, m.batch_id"""
    ).fetchall()
    return [{"batch_id": b, "kind": k} for b, k in rows]


def build_silver(con: duckdb.DuckDBPyConnection, full_refresh: bool = False) -> dict:
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
            con.execute(
                f"""create or replace temp table _new as
                    select user_id, movie_id, rating, rated_at, batch_id, ingested_at
                    from bronze.ratings_buffer where batch_id in (select batch_id from _wanted)
                    qualify {_LATEST}"""
            )
            # the rows about to be replaced: incremental gold subtracts them (gold/incremental.py, MERGES)
            con.execute(
                """create or replace temp table _silver_replaced as
                   select s.user_id, s.movie_id, s.rating, s.rated_at from silver.ratings as s
                   inner join _new as n on s.user_id = n.user_id and s.movie_id = n.movie_id and s.rated_at = n.rated_at"""
            )
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


def mark_processed(con: duckdb.DuckDBPyConnection, batches: list[dict], full_refresh: bool) -> None:
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


def silver_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
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


_KEY = "user_id, movie_id, rated_at"

BRONZE_CHECKS: tuple[Check, ...] = (
    Check(
        "ratings_buffer.batch_counts_match_audit",
        "bronze.ratings_buffer",
        """select m.batch_id, m.record_count, coalesce(b.n, 0) as rows_in_buffer
           from bronze.ingestion_metadata m
           left join (select batch_id, count(*) n from bronze.ratings_buffer group by batch_id) b using (batch_id)
           where m.kind = 'ratings' and m.status = 'completed' and m.record_count <> coalesce(b.n, 0)
             and m.batch_id in (select batch_id from bronze.ratings_buffer)""",
        description="every completed batch holds exactly the rows its audit row counts",
    ),
    Check(
        "quarantine.share",
        "bronze.ratings_buffer",
        "select batch_id, reason, row_number from bronze.quarantine",
        severity="soft",
        description="quarantined rows stay a small share of what was loaded",
    ),
)

SILVER_CHECKS: tuple[Check, ...] = (
    Check(
        "ratings.unique_key",
        "silver.ratings",
        f"select {_KEY}, count(*) as n from silver.ratings group by {_KEY} having count(*) > 1",
        description="one row per (user_id, movie_id, rated_at)",
        new_rows_sql=f"""select {_KEY}, count(*) as n from silver.ratings
            where ({_KEY}) in (select {_KEY} from silver.ratings where batch_id in (select batch_id from _check_batches))
            group by {_KEY} having count(*) > 1""",
    ),
    Check(
        "ratings.not_null",
        "silver.ratings",
        """select * from silver.ratings where user_id is null or movie_id is null or rating is null
           or rated_at is null or batch_id is null""",
        new_rows_sql="""select * from silver.ratings where batch_id in (select batch_id from _check_batches)
           and (user_id is null or movie_id is null or rating is null or rated_at is null)""",
    ),
    Check(
        "ratings.rating_range_half_steps",
        "silver.ratings",
        "select * from silver.ratings where not (rating between 0.5 and 5.0) or rating * 2 <> round(rating * 2)",
        description="ratings are 0.5-5.0 in half steps",
        new_rows_sql="""select * from silver.ratings where batch_id in (select batch_id from _check_batches)
           and (not (rating between 0.5 and 5.0) or rating * 2 <> round(rating * 2))""",
    ),
    Check(
        "ratings.movie_exists",
        "silver.ratings",
        "select r.* from silver.ratings r anti join silver.movies m using (movie_id)",
        description="relationship: every rating's movie is in silver.movies",
        new_rows_sql="""select r.* from silver.ratings r anti join silver.movies m using (movie_id)
           where r.batch_id in (select batch_id from _check_batches)""",
    ),
    Check(
        "ratings.reconcile_bronze",
        "silver.ratings",
        f"""select {_KEY} from bronze.ratings_buffer
            where batch_id in (select batch_id from silver.processed_batches)
            except select {_KEY} from silver.ratings""",
        description="no processed bronze key is missing from silver",
        # a new batch is the newest ingestion of its keys, so in silver they carry a new batch's id
        new_rows_sql=f"""select {_KEY} from bronze.ratings_buffer where batch_id in (select batch_id from _check_batches)
            except select {_KEY} from silver.ratings where batch_id in (select batch_id from _check_batches)""",
    ),
    Check(
        "movies.unique_key",
        "silver.movies",
        "select movie_id, count(*) from silver.movies group by movie_id having count(*) > 1",
    ),
    Check(
        "movies.placeholder_share",
        "silver.movies",
        "select movie_id, title from silver.movies where is_placeholder",
        severity="soft",
        description="movies referenced by ratings but described by no movies file",
    ),
)
