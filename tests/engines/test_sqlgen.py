"""Spark engine pieces that need no Spark: transpiling, lake locations and URIs, session settings, job arguments."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

from cinematch import spark_submit
from cinematch.core.errors import BadInput
from cinematch.core.settings import Settings
from cinematch.engines.spark import model_sql
from cinematch.engines.spark_lake import LakeLocation, normalize_uri
from cinematch.engines.spark_session import session_conf
from cinematch.storage import sqlgen


def test_literals_are_typed() -> None:
    assert sqlgen.literal(datetime(2024, 3, 31, 23, 59, 59, 999999)) == "TIMESTAMP '2024-03-31 23:59:59.999999'"
    assert sqlgen.literal(date(2024, 1, 2)) == "DATE '2024-01-02'"
    assert sqlgen.literal(25.0) == "CAST(25.0 AS DOUBLE)"
    assert sqlgen.literal(7) == "CAST(7 AS BIGINT)"
    assert sqlgen.literal(None) == "NULL"
    assert sqlgen.literal("it's") == "'it''s'"
    with pytest.raises(BadInput, match="naive UTC"):
        sqlgen.literal(datetime(2024, 1, 1).astimezone())
    with pytest.raises(BadInput, match="finite"):
        sqlgen.literal(float("nan"))


def test_substitute_leaves_strings_and_comments_alone() -> None:
    sql = "select '$as_of' as s, $as_of as t -- $unknown in a comment\nfrom x where w = $prior_weight"
    out = sqlgen.substitute(sql, {"as_of": None, "prior_weight": 2.5})
    assert out == "select '$as_of' as s, NULL as t -- $unknown in a comment\nfrom x where w = CAST(2.5 AS DOUBLE)"
    assert sqlgen.used_params(sql) == {"as_of", "prior_weight"}
    with pytest.raises(BadInput, match=r"\$as_of has no value"):
        sqlgen.substitute(sql, {"prior_weight": 1.0})


def test_the_same_literal_sql_runs_in_duckdb() -> None:
    # DuckDB binds the substituted text exactly like the parameterised query (the Spark engine relies on it)
    con = duckdb.connect()
    sql = "select cast($as_of as timestamp) as a, cast($prior_weight as double) * 2 as w"
    params = {"as_of": datetime(2024, 2, 3, 4, 5, 6), "prior_weight": 1.5}
    assert con.execute(sqlgen.substitute(sql, params)).fetchall() == con.execute(sql, params).fetchall()


def test_to_spark_reads_warehouse_tables_from_temp_views() -> None:
    sql = "with ratings as (select * from silver.ratings as r) select count(*) from ratings join gold.x using (id)"
    out = sqlgen.to_spark(sql)
    assert "silver__ratings AS r" in out and "gold__x" in out and "silver.ratings" not in out
    assert "FROM ratings" in out  # CTE references keep their names
    assert sqlgen.view_name("bronze.ratings_buffer") == "bronze__ratings_buffer"


def test_every_model_transpiles_with_typed_parameters() -> None:
    params = {"as_of": datetime(2024, 3, 31, 12), "prior_weight": 25.0}
    for table, sql in model_sql().items():
        out = sqlgen.to_spark(sql, params)
        assert "$" not in out and ":as_of" not in out, table
        if "as_of" in sqlgen.used_params(sql):
            assert "CAST('2024-03-31 12:00:00.000000' AS TIMESTAMP_NTZ)" in out, table
    silver = sqlgen.to_spark(model_sql()["silver.ratings"])
    # Spark has no QUALIFY: sqlglot rewrites it as a filtered subquery
    assert "QUALIFY" not in silver and "ROW_NUMBER() OVER" in silver
    assert "EXPLODE(genres)" in sqlgen.to_spark(model_sql()["gold.genre_analytics"], params)
    assert "`window`" in sqlgen.to_spark(model_sql()["gold.trending_movies"], params)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/cinematch/lake/", "s3a://bucket/cinematch/lake"),
        ("S3://bucket", "s3a://bucket"),
        ("s3a://bucket/x", "s3a://bucket/x"),
        ("gs://b/p", "gs://b/p"),
        ("file:///srv/lake/", "file:///srv/lake"),
    ],
)
def test_lake_uris_are_normalized_for_hadoop(uri: str, expected: str) -> None:
    assert normalize_uri(uri) == expected


@pytest.mark.parametrize("uri", ["", "s3://", "s3:///no-bucket", "file://host/x"])
def test_bad_lake_uris_are_refused(uri: str) -> None:
    with pytest.raises(BadInput):
        normalize_uri(uri)


def test_lake_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = LakeLocation.from_settings(Settings(home=tmp_path))
    assert local.is_local and local.local_dir == tmp_path.resolve() / "lake"
    assert local.table_uri("silver.ratings") == str(tmp_path.resolve() / "lake" / "silver" / "ratings")
    version = Path(local.new_version("gold.movie_kpis"))
    assert version.parent == tmp_path.resolve() / "lake" / "gold" and version.name.startswith(".movie_kpis-")

    monkeypatch.setenv("CINEMATCH_LAKE_URI", "s3://bucket/prefix/")
    remote = LakeLocation.from_settings(Settings(home=tmp_path))
    assert not remote.is_local and remote.root == "s3a://bucket/prefix"
    assert remote.table_uri("gold.movie_kpis") == "s3a://bucket/prefix/gold/movie_kpis"
    assert remote.new_version("gold.movie_kpis").startswith("s3a://bucket/prefix/gold/movie_kpis/v-")
    with pytest.raises(BadInput):
        remote.local_dir  # noqa: B018
    for bad in ("ratings", "silver.ratings/../../x", "Silver.Ratings"):
        with pytest.raises(BadInput, match="lake table"):
            remote.table_uri(bad)
    # a plain path in CINEMATCH_LAKE_URI is a local lake elsewhere (symlink swaps)
    monkeypatch.setenv("CINEMATCH_LAKE_URI", str(tmp_path / "elsewhere"))
    assert LakeLocation.from_settings(Settings(home=tmp_path)).is_local


def test_session_conf(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SPARK_DRIVER_MEMORY", "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    conf = session_conf(Settings(spark_master="local[2]"))
    assert conf["spark.sql.shuffle.partitions"] == "4" and conf["spark.driver.memory"] == "4g"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert "spark.sql.shuffle.partitions" not in session_conf(Settings(spark_master="spark://host:7077"))
    monkeypatch.setenv("SPARK_DRIVER_MEMORY", "10g")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert "spark.driver.memory" not in session_conf(Settings(spark_master="local[2]"))
    assert "spark.hadoop.fs.s3a.endpoint" not in session_conf(Settings())  # local lake: no S3 settings
    s3 = session_conf(Settings(lake_uri="s3://bucket/lake"))
    assert s3["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:9000"
    assert s3["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert s3["spark.hadoop.fs.s3a.endpoint.region"] == "eu-west-1"


def test_job_arguments_and_reference_paths(tmp_path: Path) -> None:
    args = spark_submit._parser().parse_args(["etl", "--home", "h", "--full-refresh", "--tag", "t"])
    assert args.command == "etl" and args.full_refresh is True and args.logical_date is None
    assert spark_submit._parser().parse_args(["train", "--force=False"]).force is False
    assert spark_submit._parser().parse_args(["train", "--force", "True"]).force is True
    with pytest.raises(SystemExit):
        spark_submit._parser().parse_args(["train", "--force=maybe"])
    path = spark_submit.ref_path(tmp_path, "etl", "manual__2024-01-01T00:00:00+00:00")
    assert path.parent == tmp_path / "runs" / "spark" and path.name == "manual__2024-01-01T00_00_00_00_00-etl.json"
    with pytest.raises(ValueError):
        spark_submit.ref_path(tmp_path, "drop", "x")
    assert spark_submit.JOB.endswith("spark_submit.py") and Path(spark_submit.JOB).is_file()
