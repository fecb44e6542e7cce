"""Read-only commands never run DDL: on a home without a warehouse they answer (or say how to make one) and leave
no warehouse behind; schemas are created by `cinematch init`, which every writing command runs first."""

from __future__ import annotations

from cinematch.core.settings import Settings


def test_reads_on_a_fresh_home_create_nothing(cli, home: Settings) -> None:
    status = cli("status", "--json")
    assert status.code == 0 and status.json["total_records"] == 0
    models = cli("models", "list", "--json")
    assert models.code == 0 and models.json == {"champion": None, "models": []}
    sql = cli("sql", "select count(*) as n from bronze.ratings_buffer", "--json")
    assert sql.code == 0 and sql.json == [{"n": 0}]  # the catalogue's empty tables, read from a scratch file
    refused = cli("sql", "delete from bronze.ratings_buffer", "--json")
    assert refused.code == 2 and "read-only" in refused.stderr
    evaluate = cli("evaluate", "--json")
    assert evaluate.code == 2 and "no ratings to evaluate" in evaluate.stderr
    assert not home.duckdb_path.exists()


def test_init_then_reads(cli, home: Settings) -> None:
    assert cli("init", "--json").code == 0 and home.duckdb_path.exists()
    sql = cli("sql", "select count(*) as n from ops.model_registry", "--json")
    assert sql.code == 0 and sql.json == [{"n": 0}]
    assert cli("models", "list", "--json").json == {"champion": None, "models": []}
