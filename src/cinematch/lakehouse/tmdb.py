"""TMDB enrichment: silver movies and reviews, gold sentiment, and their checks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from cinematch.core.log import get_logger, timed
from cinematch.lakehouse.quality import Check
from cinematch.lakehouse.sentiment import NEGATIVE, POSITIVE, compound_scores

log = get_logger(__name__)


LAKE_TABLES: tuple[str, ...] = ("silver.tmdb_movies", "silver.tmdb_reviews", "gold.tmdb_sentiment")

# TMDB's movie genre list (GET /genre/movie/list); names in a payload win, ids without a name are mapped here
GENRES: dict[int, str] = {
    28: "Action", 12: "Adventure", 16: "Animation", 35: "Comedy", 80: "Crime", 99: "Documentary", 18: "Drama",
    10751: "Family", 14: "Fantasy", 36: "History", 27: "Horror", 10402: "Music", 9648: "Mystery",
    10749: "Romance", 878: "Science Fiction", 10770: "TV Movie", 53: "Thriller", 10752: "War", 37: "Western",
}  # fmt: skip

KPI_COLUMNS: dict[str, str] = {"tmdb_id": "bigint", "budget": "bigint", "revenue": "bigint", "runtime": "integer",
                               "popularity": "double", "vote_average": "double", "vote_count": "bigint"}  # fmt: skip

# the newest ok response per TMDB id that silver does not hold yet (all of them on a full refresh)
_NEW_RAW = """
select r.tmdb_id, r.movie_id, r.fetched_at, r.run_id, r.payload
from bronze.tmdb_raw as r
left join silver.tmdb_movies as s on s.tmdb_id = r.tmdb_id
where r.status = 'ok' and (s.tmdb_id is null or r.fetched_at > s.fetched_at)
qualify row_number() over (partition by r.tmdb_id order by r.fetched_at desc, r.run_id desc) = 1
"""

# run in a private DuckDB over the new payloads, so the JSON is parsed the same way whichever warehouse holds it
_MOVIES_SQL = """
with parsed as (select tmdb_id, movie_id, fetched_at, run_id, cast(payload as json) as j from raw),
genre_rows as (
    select tmdb_id, unnest(gl) as g, generate_subscripts(gl, 1) as pos
    from (select tmdb_id, from_json(j->'genres', '[{"id":"integer","name":"varchar"}]') as gl from parsed) as p
),
genres as (
    select r.tmdb_id, list(r.g.id order by r.pos) as genre_ids,
           list(coalesce(nullif(r.g.name, ''), m.name, 'Genre ' || r.g.id) order by r.pos) as genres
    from genre_rows as r left join genre_map as m on m.genre_id = r.g.id
    group by r.tmdb_id
),
final as (
    select p.tmdb_id, p.movie_id, p.j->>'title' as title, p.j->>'original_language' as original_language,
           coalesce(g.genre_ids, cast([] as integer[])) as genre_ids,
           coalesce(g.genres, cast([] as varchar[])) as genres,
           nullif(try_cast(p.j->>'budget' as bigint), 0) as budget,
           nullif(try_cast(p.j->>'revenue' as bigint), 0) as revenue,
           nullif(try_cast(p.j->>'runtime' as integer), 0) as runtime,
           try_cast(p.j->>'popularity' as double) as popularity,
           try_cast(p.j->>'vote_average' as double) as vote_average,
           try_cast(p.j->>'vote_count' as bigint) as vote_count,
           try_cast(nullif(p.j->>'release_date', '') as date) as release_date,
           list_filter(from_json(p.j->'credits'->'crew', '[{"job":"varchar","name":"varchar"}]'),
                       lambda c: c.job = 'Director')[1].name as director,
           coalesce(list_transform(list_slice(list_sort(
               from_json(p.j->'credits'->'cast', '[{"order":"integer","name":"varchar"}]')), 1, 5),
               lambda c: c.name), cast([] as varchar[])) as top_cast,
           p.fetched_at, p.run_id
    from parsed as p left join genres as g using (tmdb_id)
)
select * from final order by tmdb_id
"""

_REVIEWS_SQL = """
with parsed as (select tmdb_id, movie_id, fetched_at, cast(payload as json) as j from raw),
rows as (
    select tmdb_id, movie_id, fetched_at, unnest(from_json(j->'reviews'->'results',
        '[{"id":"varchar","author":"varchar","content":"varchar","created_at":"varchar"}]')) as r
    from parsed
)
select r.id as review_id, tmdb_id, movie_id, r.author as author,
       try_cast(replace(replace(r.created_at, 'T', ' '), 'Z', '') as timestamp) as created_at,
       r.content as content, fetched_at
from rows
qualify row_number() over (partition by r.id order by fetched_at desc, tmdb_id) = 1
"""

_REVIEW_COLS = "review_id, tmdb_id, movie_id, author, created_at, content, sentiment, fetched_at"


def _parse(raw: pa.Table, previous: pa.Table) -> tuple[pa.Table, pa.Table, int]:
    """Silver rows of the new payloads; a review keeps its stored score unless its text changed."""
    local = duckdb.connect()
    try:
        local.register("raw", raw)
        local.register("genre_map", pa.table({"genre_id": list(GENRES), "name": list(GENRES.values())}))
        local.register("previous", previous)
        movies = local.sql(_MOVIES_SQL).to_arrow_table()
        local.execute(
            f"""create temp table reviews as
                select n.*, p.sentiment as known from ({_REVIEWS_SQL}) as n
                left join previous as p on p.review_id = n.review_id and p.content is not distinct from n.content"""
        )
        todo = local.sql("select review_id, content from reviews where known is null order by review_id")
        texts = todo.to_arrow_table()
        scored = pa.table({"review_id": texts["review_id"],
                           "score": compound_scores(texts["content"].to_pylist())})  # fmt: skip
        local.register("scored", scored)
        reviews = local.sql(
            """select review_id, tmdb_id, movie_id, author, created_at, content,
                       coalesce(known, s.score) as sentiment, fetched_at
                from reviews left join scored as s using (review_id) order by review_id"""
        ).to_arrow_table()
        return movies, reviews, texts.num_rows
    finally:
        local.close()


def build_silver(con: Any, batches: list[dict[str, Any]], full_refresh: bool) -> dict[str, int]:
    """Bring silver.tmdb_movies/tmdb_reviews up to date with bronze.tmdb_raw (inside the caller's transaction)."""
    with timed(log, "silver_tmdb", full_refresh=full_refresh) as info:
        if full_refresh:
            con.execute("delete from silver.tmdb_movies")
            con.execute("create or replace temp table _tmdb_prev as select * from silver.tmdb_reviews")
            con.execute("delete from silver.tmdb_reviews")
        raw = con.sql(_NEW_RAW).to_arrow_table()
        if raw.num_rows == 0:
            if full_refresh:
                con.execute("drop table if exists _tmdb_prev")
            info["new_movies"] = 0
            return _counts(con)
        con.register("_tmdb_ids", raw.select(["tmdb_id"]))
        source = "_tmdb_prev" if full_refresh else "silver.tmdb_reviews"
        previous = con.sql(f"select review_id, content, sentiment from {source} "
                           "where tmdb_id in (select tmdb_id from _tmdb_ids)").to_arrow_table()  # fmt: skip
        movies, reviews, scored = _parse(raw, previous)
        con.execute("delete from silver.tmdb_movies where tmdb_id in (select tmdb_id from _tmdb_ids)")
        con.execute("delete from silver.tmdb_reviews where tmdb_id in (select tmdb_id from _tmdb_ids)")
        # a review id moves with its latest movie payload
        con.register("_tmdb_reviews_new", reviews)
        con.execute("delete from silver.tmdb_reviews where review_id in (select review_id from _tmdb_reviews_new)")
        con.register("_tmdb_movies_new", movies)
        con.execute("insert into silver.tmdb_movies select * from _tmdb_movies_new")
        con.execute(f"insert into silver.tmdb_reviews ({_REVIEW_COLS}) select {_REVIEW_COLS} from _tmdb_reviews_new")
        for name in ("_tmdb_ids", "_tmdb_reviews_new", "_tmdb_movies_new"):
            con.unregister(name)
        if full_refresh:
            con.execute("drop table if exists _tmdb_prev")
        info.update(new_movies=movies.num_rows, reviews=reviews.num_rows, scored=scored)
    # new responses arrive without an ingestion batch: tell run_etl that gold needs rebuilding
    return {**_counts(con), "_changed": movies.num_rows > 0}


def _counts(con: Any) -> dict[str, int]:
    row = con.execute("select (select count(*) from silver.tmdb_movies), (select count(*) from silver.tmdb_reviews)")
    movies, reviews = row.fetchall()[0]
    return {"tmdb_movies": movies, "tmdb_reviews": reviews}


# gold.tmdb_sentiment: reviews by genre (TMDB genres; 'Unknown' for a movie without any) and calendar month of
# the review; reviews without a creation time have no month and are left out.
SENTIMENT_SQL = f"""
with reviews as (
    select r.review_id, r.tmdb_id, r.sentiment, cast(date_trunc('month', r.created_at) as date) as month_start
    from silver.tmdb_reviews as r
    where r.created_at is not null
),
listed as (select tmdb_id, unnest(genres) as genre from silver.tmdb_movies),
genres as (
    select tmdb_id, genre from listed
    union all
    select m.tmdb_id, 'Unknown' as genre from silver.tmdb_movies as m anti join listed as l using (tmdb_id)
),
final as (
    select g.genre, month_start, count(*) as n_reviews, count(distinct r.tmdb_id) as n_movies,
           avg(r.sentiment) as mean_sentiment,
           avg(case when r.sentiment >= {POSITIVE} then 1.0 else 0.0 end) as share_positive,
           avg(case when r.sentiment <= {NEGATIVE} then 1.0 else 0.0 end) as share_negative
    from reviews as r join genres as g on g.tmdb_id = r.tmdb_id
    group by g.genre, month_start
)
select * from final order by genre, month_start
"""

_LATEST_PER_MOVIE = """
select movie_id, tmdb_id, budget, revenue, runtime, popularity, vote_average, vote_count
from silver.tmdb_movies
where movie_id is not null
qualify row_number() over (partition by movie_id order by fetched_at desc, tmdb_id) = 1
"""


def build_gold(con: Any, as_of: datetime | None) -> dict[str, int]:
    """gold.tmdb_sentiment, and gold.movie_kpis enriched (TMDB columns always present, null when unknown)."""
    with timed(log, "gold_tmdb") as info:
        con.execute(f"create or replace table gold.tmdb_sentiment as {SENTIMENT_SQL}")
        for column, kind in KPI_COLUMNS.items():
            con.execute(f"alter table gold.movie_kpis add column if not exists {column} {kind}")
        sets = ", ".join(f"{c} = t.{c}" for c in KPI_COLUMNS)
        con.execute(f"update gold.movie_kpis set {', '.join(f'{c} = null' for c in KPI_COLUMNS)}")
        con.execute(f"update gold.movie_kpis as k set {sets} from ({_LATEST_PER_MOVIE}) as t "
                    "where k.movie_id = t.movie_id")  # fmt: skip
        n, enriched = con.execute(
            "select (select count(*) from gold.tmdb_sentiment), (select count(*) from gold.movie_kpis "
            "where tmdb_id is not null)"
        ).fetchall()[0]
        info.update(sentiment_rows=n, enriched_movies=enriched)
    return {"tmdb_sentiment": n}


SILVER_CHECKS: tuple[Check, ...] = (
    Check("tmdb_movies.unique_key", "silver.tmdb_movies",
          "select tmdb_id, count(*) as n from silver.tmdb_movies group by tmdb_id having count(*) > 1",
          description="one row per TMDB id (the latest fetch)"),
    Check("tmdb_movies.not_null", "silver.tmdb_movies",
          "select tmdb_id, movie_id from silver.tmdb_movies where movie_id is null or title is null"),
    # hard: links.csv names the MovieLens movie, so an unknown movie_id means links and movies disagree
    Check("tmdb_movies.movie_exists", "silver.tmdb_movies",
          "select t.tmdb_id, t.movie_id from silver.tmdb_movies t anti join silver.movies m using (movie_id)",
          description="relationship: every TMDB movie's movie_id is in silver.movies"),
    Check("tmdb_movies.values_valid", "silver.tmdb_movies",
          "select tmdb_id, budget, runtime, vote_average from silver.tmdb_movies where budget < 0 or revenue < 0"
          " or runtime < 0 or vote_average < 0 or vote_average > 10 or vote_count < 0"),
    Check("tmdb_reviews.unique_key", "silver.tmdb_reviews",
          "select review_id, count(*) as n from silver.tmdb_reviews group by review_id having count(*) > 1"),
    Check("tmdb_reviews.not_null", "silver.tmdb_reviews",
          "select review_id, tmdb_id from silver.tmdb_reviews where review_id is null or sentiment is null"),
    Check("tmdb_reviews.sentiment_range", "silver.tmdb_reviews",
          "select review_id, sentiment from silver.tmdb_reviews where sentiment < -1 or sentiment > 1",
          description="VADER compound scores lie in [-1, 1]"),
    Check("tmdb_reviews.movie_exists", "silver.tmdb_reviews",
          "select r.review_id, r.tmdb_id from silver.tmdb_reviews r anti join silver.tmdb_movies m using (tmdb_id)"),
)  # fmt: skip

GOLD_CHECKS: tuple[Check, ...] = (
    Check("tmdb_sentiment.unique_key", "gold.tmdb_sentiment",
          "select genre, month_start, count(*) as n from gold.tmdb_sentiment group by genre, month_start"
          " having count(*) > 1 or genre is null or month_start is null"),
    Check("tmdb_sentiment.values_valid", "gold.tmdb_sentiment",
          "select * from gold.tmdb_sentiment where n_reviews < 1 or mean_sentiment < -1 or mean_sentiment > 1"
          " or share_positive < 0 or share_negative < 0 or share_positive + share_negative > 1 + 1e-9"),
    Check("movie_kpis.tmdb_matches_silver", "gold.movie_kpis",
          f"select k.movie_id, k.budget, t.budget from gold.movie_kpis k left join ({_LATEST_PER_MOVIE}) t"
          " on t.movie_id = k.movie_id where (t.tmdb_id is null) <> (k.tmdb_id is null)"
          " or k.budget is distinct from t.budget or k.runtime is distinct from t.runtime",
          description="the TMDB columns of movie_kpis are those of the latest fetch of each movie"),
)  # fmt: skip
