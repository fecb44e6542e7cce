"""Lineage names and the gold column lineage: OpenLineage naming, no secret in a name, lineage from the SQL."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import pytest
from tests.conftest import require

from cinematch.core.settings import Settings
from cinematch.lakehouse.gold import GOLD_MODELS
from cinematch.lakehouse.lineage_sql import gold_column_lineage, gold_inputs
from cinematch.pipelines.lineage import STEPS, file_ref, step_datasets
from cinematch.storage.catalogue import TABLES
from cinematch.storage.lineage_names import warehouse_source

PASSWORD = "s3cr%40t-Pw"  # percent-encoded @ in it


@pytest.mark.parametrize(
    ("url", "namespace", "database"),
    [
        (f"postgresql://cm:{PASSWORD}@db.example.com:6543/cinematch", "postgres://db.example.com:6543", "cinematch"),
        (f"postgresql://cm:{PASSWORD}@[::1]/films", "postgres://[::1]:5432", "films"),
        (f"host=/run/postgresql port=5439 dbname=cm user=me password={PASSWORD}", "postgres://localhost:5439", "cm"),
        (f"postgresql://cm:{PASSWORD}@h1:5433,h2:5434/db", "postgres://h1:5433", "db"),
    ],
)
def test_postgres_tables_are_named_by_the_spec_without_credentials(url: str, namespace: str, database: str) -> None:
    require(importlib.util.find_spec("psycopg") is not None, "psycopg (libpq parses the connection string)")
    settings = Settings(database_url=url)
    source = warehouse_source(settings)
    assert (source.namespace, source.database) == (namespace, database)
    for refs in step_datasets("etl", settings):
        for ref in refs:
            text = f"{ref.namespace} {ref.name} {ref.url}"
            assert "s3cr" not in text and "cm:" not in text and "me@" not in text
    assert source.table("gold.movie_kpis") == (namespace, f"{database}.gold.movie_kpis")


def test_duckdb_and_file_names(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    host = socket.gethostname()
    inputs, outputs = step_datasets("train", settings)
    by_key = {r.key: r for r in inputs + outputs}
    assert (by_key["silver.ratings"].namespace, by_key["silver.ratings"].name) == (
        f"duckdb://{host}{(tmp_path / 'home' / 'warehouse.duckdb').as_posix()}", "warehouse.silver.ratings")  # fmt: skip
    models = by_key["files:models"]
    assert (models.namespace, models.name) == (f"file://{host}", (tmp_path / "home" / "models").as_posix()[1:])
    assert models.url == f"file://{host}/{models.name}"  # what the Airflow provider reads back to the same pair
    read = file_ref(tmp_path / "batch.csv")
    assert (read.namespace, read.name) == (f"file://{host}", (tmp_path / "batch.csv").as_posix()[1:])
    tmdb = step_datasets("tmdb", Settings(tmdb_base_url="https://api.example.org/3/", tmdb_api_key="k3y"))[0][0]
    assert (tmdb.namespace, tmdb.name) == ("https", "api.example.org/3/movie")
    catalogued = {t.name for t in TABLES}
    for step, (reads, writes) in STEPS.items():  # every table a step names exists (or is a gold model's output)
        for key in reads + writes:
            assert key in catalogued or key.startswith(("gold.", "files:", "api:")), (step, key)


def test_gold_column_lineage_comes_from_the_sql() -> None:
    lineage = gold_column_lineage()
    assert set(lineage) == {f"gold.{m}" for m in GOLD_MODELS}
    columns = {t.name: {c.split()[0] for c in t.columns.replace("\n", " ").split(",")} for t in TABLES}
    for table, fields in lineage.items():
        assert fields, table
        for sources in fields.values():
            for source, column in sources:
                assert source in ("silver.ratings", "silver.movies") and column in columns[source], (table, source)
    kpis = lineage["gold.movie_kpis"]
    assert kpis["title"] == [("silver.movies", "title")]
    assert kpis["avg_rating"] == [("silver.ratings", "rating")]
    assert "n_ratings" not in kpis  # count(*): computed from no column, so the SQL names none
    assert lineage["gold.user_engagement"]["user_id"] == [("silver.ratings", "user_id")]
    assert gold_inputs()["gold.user_engagement"] == ["silver.ratings"]
    assert gold_inputs()["gold.movie_kpis"] == ["silver.movies", "silver.ratings"]
