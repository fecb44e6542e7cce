"""GET /movies/{movie_id}: catalogue fields plus TMDB fields where the movie was enriched."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from tests.ingest.tmdb.fake_tmdb import MOVIES, SCRIPT, FakeTmdb

from cinematch.ingest.bronze import ingest_file
from cinematch.ingest.tmdb import fetch_tmdb
from cinematch.lakehouse.etl import run_etl
from cinematch.serving.publish import publish
from cinematch.storage.warehouse import write_session
from cinematch.web.api import create_app

RATINGS = "userId,movieId,rating,timestamp\n1,1,4.0,1700000000\n2,1,5.0,1700000100\n3,2,3.0,1700000200\n"


def test_movie_details_endpoint(tmdb_settings, inputs, tmp_path) -> None:
    lines = RATINGS.splitlines()
    (tmp_path / "ratings_a.csv").write_text("\n".join(lines[:3]) + "\n")  # publish compares two batches
    (tmp_path / "ratings_b.csv").write_text("\n".join([lines[0], lines[3]]) + "\n")
    with FakeTmdb(MOVIES, SCRIPT) as fake:
        settings = tmdb_settings(fake)
        with write_session(settings) as con:
            ingest_file(con, inputs[0], kind="movies")
            ingest_file(con, tmp_path / "ratings_a.csv")
            ingest_file(con, tmp_path / "ratings_b.csv")
            fetch_tmdb(con, settings)
            run_etl(con, settings, write_lake=False)
            publish(con, settings)
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 10
        while (toy := client.get("/movies/1")).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.05)  # the views file loads in the background
        heat, missing, trending = client.get("/movies/6"), client.get("/movies/999"), client.get("/movies/trending")
    assert toy.status_code == 200, toy.text
    doc = toy.json()
    assert (doc["title"], doc["genres"], doc["release_year"]) == (
        "Toy Story",
        ["Animation", "Children", "Comedy"],
        1995,
    )
    assert (doc["n_ratings"], doc["avg_rating"], doc["tmdb_id"], doc["budget"], doc["runtime"]) == (
        2,
        4.5,
        862,
        30000000,
        81,
    )
    assert (doc["vote_average"], doc["director"], doc["release_date"]) == (7.97, "John Lasseter", "1995-10-30")
    assert doc["top_cast"] == ["Tom Hanks", "Tim Allen", "Don Rickles"]
    assert heat.status_code == 200 and heat.json()["title"] == "Heat" and heat.json()["tmdb_id"] is None
    assert heat.json()["budget"] is None and heat.json()["n_ratings"] == 0
    assert missing.status_code == 404 and missing.json()["error"] == "not found"
    assert trending.status_code == 200  # /movies/trending is not taken for a movie id
