"""Silver and gold of the TMDB source, values computed by hand from the fake API's fixtures."""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest
from tests.ingest.tmdb.fake_tmdb import MOVIES, SCRIPT, FakeTmdb

from cinematch.core.errors import QualityGateFailed
from cinematch.ingest.bronze import ingest_file
from cinematch.ingest.tmdb import fetch_tmdb
from cinematch.lakehouse.etl import run_etl
from cinematch.lakehouse.sentiment import compound_scores
from cinematch.storage import catalogue
from cinematch.storage.pg_migrations import all_migrations
from cinematch.storage.warehouse import query_rows, write_session

RATINGS = (
    "userId,movieId,rating,timestamp\n1,1,4.0,1700000000\n2,1,5.0,1700000100\n3,2,3.0,1700000200\n4,5,2.5,1700000300\n"
)


@pytest.fixture
def built(tmdb_settings, inputs, tmp_path):
    movies_csv, _ = inputs
    (tmp_path / "ratings.csv").write_text(RATINGS)
    with FakeTmdb(MOVIES, SCRIPT) as fake:
        settings = tmdb_settings(fake)
        with write_session(settings) as con:
            ingest_file(con, movies_csv, kind="movies")
            ingest_file(con, tmp_path / "ratings.csv")
            fetch_tmdb(con, settings)
            run = run_etl(con, settings)
            yield settings, con, run


def test_sentiment_signs() -> None:
    pos, neg, empty = compound_scores(["A wonderful, beautiful film. I loved it!", "Awful, boring, I hated it.", ""])
    assert pos > 0.5 and neg < -0.5 and empty == 0.0


def test_silver_movies_and_reviews(built) -> None:
    settings, con, run = built
    assert run["layers"]["silver"]["rows"]["tmdb_movies"] == 3 and run["layers"]["silver"]["rows"]["tmdb_reviews"] == 3
    movies = {r["tmdb_id"]: r for r in query_rows(con, "select * from silver.tmdb_movies")}
    assert set(movies) == {862, 8844, 11862}  # the 404 and the malformed body never reach silver
    ts = movies[862]
    assert (ts["movie_id"], ts["title"], ts["genres"], ts["genre_ids"]) == (
        1,
        "Toy Story",
        ["Animation", "Comedy"],
        [16, 35],
    )
    assert (ts["budget"], ts["revenue"], ts["runtime"], ts["vote_count"]) == (30000000, 373554033, 81, 17000)
    assert ts["popularity"] == pytest.approx(21.946) and ts["vote_average"] == pytest.approx(7.97)
    assert ts["release_date"] == date(1995, 10, 30) and ts["director"] == "John Lasseter"
    assert ts["top_cast"] == ["Tom Hanks", "Tim Allen", "Don Rickles"]  # credits order, not payload order
    assert movies[8844]["genres"] == ["Adventure", "Fantasy", "Family"]  # id 10751 without a name: mapped
    fb = movies[11862]
    assert (fb["movie_id"], fb["budget"], fb["revenue"], fb["director"], fb["top_cast"]) == (5, None, None, None, [])
    reviews = {r["review_id"]: r for r in query_rows(con, "select * from silver.tmdb_reviews")}
    assert set(reviews) == {"r-ts1", "r-ts2", "r-jm1"}
    assert reviews["r-ts1"]["created_at"] == datetime(2017, 2, 13, 23, 16, 19, 538000)
    assert reviews["r-ts1"]["sentiment"] > 0.05 and reviews["r-ts2"]["sentiment"] < -0.05
    assert reviews["r-jm1"]["sentiment"] > 0.05 and reviews["r-jm1"]["movie_id"] == 2
    assert all(r["passed"] for r in run["layers"]["silver"]["checks"])
    assert (settings.lake_dir / "silver" / "tmdb_reviews").is_symlink()
    assert (settings.lake_dir / "gold" / "tmdb_sentiment").is_symlink()


def test_gold_sentiment_and_movie_kpis(built) -> None:
    _, con, run = built
    s = {r["review_id"]: r["sentiment"] for r in query_rows(con, "select * from silver.tmdb_reviews")}
    got = {(r["genre"], r["month_start"]): r for r in query_rows(con, "select * from gold.tmdb_sentiment")}
    feb17, mar18 = date(2017, 2, 1), date(2018, 3, 1)
    # Toy Story (Animation, Comedy): r-ts1 and r-ts2 in Feb 2017; Jumanji (Adventure, Fantasy, Family): r-jm1
    assert set(got) == {("Animation", feb17), ("Comedy", feb17), ("Adventure", mar18), ("Fantasy", mar18),
                        ("Family", mar18)}  # fmt: skip
    anim = got[("Animation", feb17)]
    assert (anim["n_reviews"], anim["n_movies"]) == (2, 1)
    assert anim["mean_sentiment"] == pytest.approx((s["r-ts1"] + s["r-ts2"]) / 2)
    assert (anim["share_positive"], anim["share_negative"]) == (0.5, 0.5)
    fam = got[("Family", mar18)]
    assert (fam["n_reviews"], fam["mean_sentiment"], fam["share_positive"]) == (1, pytest.approx(s["r-jm1"]), 1.0)
    kpis = {r["movie_id"]: r for r in query_rows(con, "select * from gold.movie_kpis")}
    assert set(kpis) == {1, 2, 3, 4, 5, 6}
    assert (kpis[1]["tmdb_id"], kpis[1]["budget"], kpis[1]["runtime"], kpis[1]["n_ratings"]) == (862, 30000000, 81, 2)
    assert kpis[1]["vote_average"] == pytest.approx(7.97) and kpis[1]["popularity"] == pytest.approx(21.946)
    assert (kpis[5]["tmdb_id"], kpis[5]["budget"], kpis[5]["runtime"]) == (11862, None, 106)
    for unknown in (3, 4, 6):  # 404, malformed, no tmdbId: columns present, null
        assert (kpis[unknown]["tmdb_id"], kpis[unknown]["budget"], kpis[unknown]["vote_average"]) == (None, None, None)
    assert run["layers"]["gold"]["rows"]["tmdb_sentiment"] == 5
    assert all(r["passed"] for r in run["layers"]["gold"]["checks"])


def test_only_new_or_changed_reviews_are_scored(built) -> None:
    settings, con, _ = built
    # a marker score on r-ts1 survives when its text is unchanged; r-ts2's new text is scored afresh
    con.execute("update silver.tmdb_reviews set sentiment = 0.123 where review_id in ('r-ts1', 'r-ts2')")
    doc = json.loads(json.dumps(MOVIES[862]))
    doc["reviews"]["results"][1]["content"] = "Brilliant and delightful, the best film ever made."
    con.execute("""insert into bronze.tmdb_raw select tmdb_id, movie_id, endpoint, status, http_status, reason,
                   attempts, fetched_at + interval 1 hour, ?, 'rerun' from bronze.tmdb_raw where tmdb_id = 862""",
                [json.dumps(doc)])  # fmt: skip
    doc = run_etl(con, settings, write_lake=False)
    assert doc["new_batches"] == [] and not doc.get("up_to_date")  # a new response alone rebuilds gold
    assert doc["layers"]["gold"]["rows"]["tmdb_sentiment"] > 0
    scores = dict(con.execute("select review_id, sentiment from silver.tmdb_reviews").fetchall())
    assert scores["r-ts1"] == 0.123 and scores["r-ts2"] > 0.5
    assert con.execute("select run_id from silver.tmdb_movies where tmdb_id = 862").fetchall() == [("rerun",)]
    assert con.execute("select count(*) from silver.tmdb_movies").fetchall() == [(3,)]


def test_gate_stops_a_tmdb_movie_unknown_to_movielens(built) -> None:
    settings, con, _ = built
    con.execute("""insert into bronze.tmdb_raw select 999, 4242, endpoint, status, http_status, reason, attempts,
                   fetched_at, replace(payload, '"id": 11862', '"id": 999'), run_id
                   from bronze.tmdb_raw where tmdb_id = 11862""")  # fmt: skip
    with pytest.raises(QualityGateFailed, match="tmdb_movies.movie_exists"):
        run_etl(con, settings, write_lake=False)
    assert con.execute("select count(*) from silver.tmdb_movies where tmdb_id = 999").fetchall() == [(0,)]


def test_duckdb_and_postgres_ddl_match_column_for_column() -> None:
    import re

    def columns(stmt: str) -> tuple[str, list[str]]:
        name = re.search(r"exists (\S+) \(", stmt).group(1)
        body = stmt[stmt.index("(") + 1 : stmt.rindex(")")]
        return name, [c.split()[0] for c in re.split(r",\s*(?![^()]*\))", body)]

    ((_, _, steps),) = [m for m in all_migrations() if m[0] == 3]
    pg = dict(columns(s) for s in steps if s.startswith("create table"))
    duck = dict(columns(catalogue.BY_NAME[name].ddl()) for name in pg)
    assert duck == pg and set(pg) == {"bronze.tmdb_raw", "silver.tmdb_movies", "silver.tmdb_reviews"}
