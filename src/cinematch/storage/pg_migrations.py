"""The PostgreSQL warehouse schema as numbered migrations, recorded in ``ops.schema_migrations``."""

from __future__ import annotations

from typing import Any

from cinematch.core.log import get_logger, log_event

log = get_logger(__name__)

MIGRATION_LOCK = 0x43494E454D41_01  # pg_advisory_xact_lock key (any fixed bigint)


# --- migrations ----------------------------------------------------------------------------------------------
# Numbered steps, each applied once and recorded in ops.schema_migrations. A step is never edited after it has
# shipped: a change to a table is a new step (ALTER ...). The DDL is PostgreSQL's own; tests check that the
# migrated schema matches the table catalogue (storage/catalogue.py) column for column.

MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (1, "warehouse tables", (
        "create schema if not exists bronze",
        "create schema if not exists silver",
        "create schema if not exists gold",
        "create schema if not exists serving",
        """create table if not exists bronze.ratings_buffer (
            user_id bigint not null, movie_id bigint not null, rating double precision not null,
            rated_at timestamp not null, batch_id text not null, source_file text, ingested_at timestamp not null)""",
        # BRIN, not B-tree: a batch's rows are contiguous, and a B-tree would double the cost of every COPY
        "create index if not exists ratings_buffer_batch on bronze.ratings_buffer using brin (batch_id)",
        """create table if not exists bronze.ingestion_metadata (
            batch_id text primary key, ingestion_date timestamp not null, record_count bigint not null,
            quarantined_count bigint not null default 0, status text not null, checksum text not null,
            source text, kind text not null default 'ratings', notes text,
            duration_seconds double precision, rows_per_second double precision)""",
        # the same content is loaded once, also when two machines ingest it at once under different batch ids
        """create unique index if not exists ingestion_metadata_content on bronze.ingestion_metadata (checksum)
            where status = 'completed'""",
        """create table if not exists bronze.quarantine (
            batch_id text not null, reason text not null, row_number bigint,
            user_id text, movie_id text, rating text, rated_at text, raw text,
            source_file text, quarantined_at timestamp not null)""",
        """create table if not exists bronze.movies (
            movie_id bigint not null, title text, genres text[], release_year integer,
            batch_id text not null, source_file text, ingested_at timestamp not null)""",
        """create table if not exists ops.pipeline_runs (
            run_id text not null, pipeline text not null, step text not null,
            started_at timestamp not null, finished_at timestamp, status text not null,
            rows bigint, duration_seconds double precision, details json)""",
        """create table if not exists ops.model_registry (
            version text primary key, created_at timestamp not null, status text not null,
            is_champion boolean not null default false, params json, metrics json,
            batch_ids json, data_checksum text, n_train bigint, n_test bigint,
            promotion json, path text)""",
        """create table if not exists ops.drift_reports (
            report_id text primary key, checked_at timestamp not null, model_version text,
            batch_ids json, n_reference bigint, n_current bigint, kl_divergence double precision,
            mean_shift double precision, median_shift double precision, psi double precision,
            ks_statistic double precision, score double precision, model_rmse_reference double precision,
            model_rmse_current double precision, model_degradation double precision,
            decision text not null, should_retrain boolean not null, details json)""",
        """create table if not exists silver.ratings (
            user_id bigint not null, movie_id bigint not null, rating double precision not null,
            rated_at timestamp not null, batch_id text not null, ingested_at timestamp not null)""",
        "create index if not exists silver_ratings_key on silver.ratings (user_id, movie_id, rated_at)",
        "create index if not exists silver_ratings_batch on silver.ratings using brin (batch_id)",
        """create table if not exists silver.movies (
            movie_id bigint not null, title text, genres text[], release_year integer,
            is_placeholder boolean not null)""",
        """create table if not exists silver.processed_batches (
            batch_id text primary key, kind text not null, rows bigint not null, processed_at timestamp not null)""",
        """create table if not exists ops.training_batches (
            batch_id text primary key, merged_at timestamp not null, model_version text)""",
        """create table if not exists serving.recommendations (
            user_id bigint not null, rank integer not null, movie_id bigint not null, score double precision not null,
            model_version text not null, generated_at timestamp not null)""",
        """create table if not exists ops.champion_history (
            seq bigint primary key, version text not null, action text not null, changed_at timestamp not null,
            previous text, reason text)""",
    )),
    (2, "viewing sessions, users and content", (
        """create table if not exists bronze.users (user_id bigint not null, signup_date date, country text,
            age_group text, subscription text, extra json, batch_id text not null, source_file text,
            ingested_at timestamp not null)""",
        """create table if not exists bronze.sessions (session_id text not null, user_id bigint not null,
            movie_id bigint not null, started_at timestamp not null, watch_seconds double precision not null,
            device text, extra json, batch_id text not null, source_file text, ingested_at timestamp not null)""",
        """create table if not exists bronze.content (movie_id bigint not null, title text,
            runtime_minutes double precision, release_date date, genres text[], languages text[],
            production__studio text, production__country text, production__budget_usd double precision,
            cast__name text[], cast__character text[], extra json, batch_id text not null, source_file text,
            ingested_at timestamp not null)""",
        """create table if not exists silver.users (user_id bigint not null, signup_date date, country text,
            age_group text, subscription text, extra json, batch_id text not null, ingested_at timestamp not null)""",
        """create table if not exists silver.sessions (session_id text not null, user_id bigint not null,
            movie_id bigint not null, started_at timestamp not null, watch_seconds double precision not null,
            device text, extra json, batch_id text not null, ingested_at timestamp not null)""",
        """create table if not exists silver.content (movie_id bigint not null, title text,
            runtime_minutes double precision, release_date date, genres text[], languages text[],
            production__studio text, production__country text, production__budget_usd double precision,
            cast__name text[], cast__character text[], extra json, batch_id text not null,
            ingested_at timestamp not null)""",
        """create table if not exists gold.content_performance (movie_id bigint, title text, views bigint,
            unique_viewers bigint, total_watch_hours double precision, avg_watch_minutes double precision,
            runtime_minutes double precision, completion_rate double precision, completed_views bigint,
            first_viewed_at timestamp, last_viewed_at timestamp, views_rank bigint, as_of timestamp)""",
    )),
    (3, "tmdb enrichment tables", (
        """create table if not exists bronze.tmdb_raw (
            tmdb_id bigint not null, movie_id bigint, endpoint text not null, status text not null,
            http_status integer, reason text, attempts integer not null, fetched_at timestamp not null,
            payload text, run_id text not null)""",
        "create index if not exists tmdb_raw_id on bronze.tmdb_raw (tmdb_id, status)",
        """create table if not exists silver.tmdb_movies (
            tmdb_id bigint not null, movie_id bigint, title text, original_language text, genre_ids integer[],
            genres text[], budget bigint, revenue bigint, runtime integer, popularity double precision,
            vote_average double precision, vote_count bigint, release_date date, director text, top_cast text[],
            fetched_at timestamp not null, run_id text not null)""",
        """create table if not exists silver.tmdb_reviews (
            review_id text not null, tmdb_id bigint not null, movie_id bigint, author text,
            created_at timestamp, content text, sentiment double precision not null, fetched_at timestamp not null)""",
    )),
    (4, "recommendation explanations", (
        "alter table serving.recommendations add column if not exists because text",
    )),
    (5, "replay periods", (
        """create table if not exists ops.replay_periods (
            replay_id text not null, policy text not null, period integer not null,
            period_start timestamp not null, period_end timestamp not null, status text not null,
            model_version text, n_ratings bigint not null, n_users bigint not null, hit_rate_at_10 double precision,
            ndcg_at_10 double precision, coverage double precision, fallback_share double precision,
            rmse double precision, n_rmse bigint, n_unknown bigint, drift_score double precision, decision text,
            retrained boolean, new_version text, promoted boolean, seconds double precision,
            train_seconds double precision, recorded_at timestamp not null,
            primary key (replay_id, policy, period))""",
    )),
)  # fmt: skip


def all_migrations() -> tuple[tuple[int, str, tuple[str, ...]], ...]:
    """Every migration, in number order (numbers are unique)."""
    steps = sorted(MIGRATIONS, key=lambda m: m[0])
    numbers = [m[0] for m in steps]
    if len(set(numbers)) != len(numbers):
        raise RuntimeError(f"two PostgreSQL migrations share a number: {numbers}")
    return tuple(steps)


def apply_migrations(pg: Any) -> list[int]:
    """Apply every pending step on psycopg connection ``pg`` in one transaction; returns the versions applied."""
    with pg.transaction():
        # Concurrent first runs would race on CREATE SCHEMA/TABLE; the lock makes the second wait, then no-op.
        pg.execute("select pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
        pg.execute("create schema if not exists ops")
        pg.execute(
            """create table if not exists ops.schema_migrations (
                version integer primary key, name text not null, applied_at timestamp not null)"""
        )
        done = {r[0] for r in pg.execute("select version from ops.schema_migrations").fetchall()}
        applied = []
        for version, name, steps in all_migrations():
            if version in done:
                continue
            for step in steps:
                pg.execute(step)
            pg.execute("insert into ops.schema_migrations values (%s, %s, now() at time zone 'utc')", [version, name])
            applied.append(version)
    if applied:
        log_event(log, "schema_migrated", applied=",".join(map(str, applied)))
    return applied


def schema_version(pg: Any) -> int | None:
    """The newest applied migration, or None when the database has no CineMatch schema yet."""
    exists = pg.execute("select to_regclass('ops.schema_migrations') is not null").fetchall()[0][0]
    if not exists:
        return None
    version: int | None = pg.execute("select max(version) from ops.schema_migrations").fetchall()[0][0]
    return version
