"""The table catalogue: every table the platform owns, its columns and the layer that writes it, in one place.

The DuckDB DDL is generated from it (``duckdb_ddl``) and run by ``init`` only; the PostgreSQL migrations
(storage/pg_migrations.py) are numbered history and are checked against it column for column by the tests.
Gold model outputs (``create or replace table gold.<model> as <sql>``) are defined by their SQL files, not here;
``gold.content_performance`` is here because the serving views read it before the first viewing batch.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMAS = ("bronze", "silver", "gold", "ops", "serving")


@dataclass(frozen=True)
class Table:
    """One table: ``schema.name``, its columns in DuckDB's dialect, and the package whose steps write it."""

    name: str
    columns: str
    writer: str

    @property
    def schema(self) -> str:
        return self.name.split(".", 1)[0]

    def ddl(self) -> str:
        return f"create table if not exists {self.name} ({self.columns})"


_USERS = (
    "user_id bigint not null, signup_date date, country varchar, age_group varchar, subscription varchar, extra json"
)
_SESSIONS = ("session_id varchar not null, user_id bigint not null, movie_id bigint not null, "
             "started_at timestamp not null, watch_seconds double not null, device varchar, extra json")  # fmt: skip
_CONTENT = ("movie_id bigint not null, title varchar, runtime_minutes double, release_date date, genres varchar[], "
            "languages varchar[], production__studio varchar, production__country varchar, "
            "production__budget_usd double, cast__name varchar[], cast__character varchar[], extra json")  # fmt: skip
_BRONZE = ", batch_id varchar not null, source_file varchar, ingested_at timestamp not null"
_SILVER = ", batch_id varchar not null, ingested_at timestamp not null"

TABLES: tuple[Table, ...] = (
    # ingestion: bronze and its audit
    Table("bronze.ratings_buffer", """user_id bigint not null, movie_id bigint not null, rating double not null,
        rated_at timestamp not null, batch_id varchar not null, source_file varchar,
        ingested_at timestamp not null""", "ingest"),
    Table("bronze.ingestion_metadata", """batch_id varchar primary key, ingestion_date timestamp not null,
        record_count bigint not null, quarantined_count bigint not null default 0, status varchar not null,
        checksum varchar not null, source varchar, kind varchar not null default 'ratings', notes varchar,
        duration_seconds double, rows_per_second double""", "ingest"),
    Table("bronze.quarantine", """batch_id varchar not null, reason varchar not null, row_number bigint,
        user_id varchar, movie_id varchar, rating varchar, rated_at varchar, raw varchar,
        source_file varchar, quarantined_at timestamp not null""", "ingest"),
    Table("bronze.movies", """movie_id bigint not null, title varchar, genres varchar[], release_year integer,
        batch_id varchar not null, source_file varchar, ingested_at timestamp not null""", "ingest"),
    Table("bronze.users", _USERS + _BRONZE, "ingest"),
    Table("bronze.sessions", _SESSIONS + _BRONZE, "ingest"),
    Table("bronze.content", _CONTENT + _BRONZE, "ingest"),
    # bronze.tmdb_raw.status: ok | not_found (404, not refetched) | malformed (quarantined, with the reason;
    # refetched by the next run) | failed (retries exhausted; refetched by the next run)
    Table("bronze.tmdb_raw", """tmdb_id bigint not null, movie_id bigint, endpoint varchar not null,
        status varchar not null, http_status integer, reason varchar, attempts integer not null,
        fetched_at timestamp not null, payload varchar, run_id varchar not null""", "ingest"),
    # every step's audit row
    Table("ops.pipeline_runs", """run_id varchar not null, pipeline varchar not null, step varchar not null,
        started_at timestamp not null, finished_at timestamp, status varchar not null,
        rows bigint, duration_seconds double, details json""", "storage"),
    # lakehouse: silver (gold models are defined by their SQL files)
    Table("silver.ratings", """user_id bigint not null, movie_id bigint not null, rating double not null,
        rated_at timestamp not null, batch_id varchar not null, ingested_at timestamp not null""", "lakehouse"),
    Table("silver.movies", """movie_id bigint not null, title varchar, genres varchar[], release_year integer,
        is_placeholder boolean not null""", "lakehouse"),
    Table("silver.processed_batches", """batch_id varchar primary key, kind varchar not null, rows bigint not null,
        processed_at timestamp not null""", "lakehouse"),
    Table("silver.users", _USERS + _SILVER, "lakehouse"),
    Table("silver.sessions", _SESSIONS + _SILVER, "lakehouse"),
    Table("silver.content", _CONTENT + _SILVER, "lakehouse"),
    Table("gold.content_performance", """movie_id bigint, title varchar, views bigint, unique_viewers bigint,
        total_watch_hours double, avg_watch_minutes double, runtime_minutes double, completion_rate double,
        completed_views bigint, first_viewed_at timestamp, last_viewed_at timestamp, views_rank bigint,
        as_of timestamp""", "lakehouse"),
    Table("silver.tmdb_movies", """tmdb_id bigint not null, movie_id bigint, title varchar,
        original_language varchar, genre_ids integer[], genres varchar[], budget bigint, revenue bigint,
        runtime integer, popularity double, vote_average double, vote_count bigint, release_date date,
        director varchar, top_cast varchar[], fetched_at timestamp not null, run_id varchar not null""", "lakehouse"),
    Table("silver.tmdb_reviews", """review_id varchar not null, tmdb_id bigint not null, movie_id bigint,
        author varchar, created_at timestamp, content varchar, sentiment double not null,
        fetched_at timestamp not null""", "lakehouse"),
    # recommender: registry, training batches, the champion's lists
    Table("ops.model_registry", """version varchar primary key, created_at timestamp not null, status varchar not null,
        is_champion boolean not null default false, params json, metrics json, batch_ids json,
        data_checksum varchar, n_train bigint, n_test bigint, promotion json, path varchar""", "recommender"),
    Table("ops.training_batches", """batch_id varchar primary key, merged_at timestamp not null,
        model_version varchar""", "recommender"),
    Table("ops.champion_history", """seq bigint primary key, version varchar not null, action varchar not null,
        changed_at timestamp not null, previous varchar, reason varchar""", "recommender"),
    Table("serving.recommendations", """user_id bigint not null, rank integer not null, movie_id bigint not null,
        score double not null, model_version varchar not null, generated_at timestamp not null,
        because varchar""", "recommender"),
    # replays: one row per period and policy of `cinematch replay` (prequential scores, the decision taken)
    Table("ops.replay_periods", """replay_id varchar not null, policy varchar not null, period integer not null,
        period_start timestamp not null, period_end timestamp not null, status varchar not null,
        model_version varchar, n_ratings bigint not null, n_users bigint not null, hit_rate_at_10 double,
        ndcg_at_10 double, coverage double, fallback_share double, rmse double, n_rmse bigint, n_unknown bigint,
        drift_score double, decision varchar, retrained boolean, new_version varchar, promoted boolean,
        seconds double, train_seconds double, recorded_at timestamp not null,
        primary key (replay_id, policy, period)""", "pipelines"),
    # drift
    Table("ops.drift_reports", """report_id varchar primary key, checked_at timestamp not null,
        model_version varchar, batch_ids json, n_reference bigint, n_current bigint, kl_divergence double,
        mean_shift double, median_shift double, psi double, ks_statistic double, score double,
        model_rmse_reference double, model_rmse_current double, model_degradation double,
        decision varchar not null, should_retrain boolean not null, details json""", "drift"),
)  # fmt: skip

# Columns added after a table first shipped: a DuckDB warehouse made by an older version gets them in place
# (PostgreSQL: a numbered migration each).
UPGRADES: tuple[str, ...] = ("alter table serving.recommendations add column if not exists because varchar",)

BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}


def duckdb_ddl() -> tuple[str, ...]:
    """Every schema and table, then the in-place upgrades: idempotent, run by ``init``."""
    return (
        *(f"create schema if not exists {s}" for s in SCHEMAS),
        *(t.ddl() for t in TABLES),
        *UPGRADES,
    )
