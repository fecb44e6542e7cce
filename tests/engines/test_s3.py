"""An s3:// lake against a real S3 protocol server (moto on loopback): settings, versions, _CURRENT, reads."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cinematch.core.errors import BadInput
from cinematch.core.settings import Settings
from cinematch.engines.spark_lake import (
    POINTER,
    LakeLocation,
    arrow_filesystem,
    publish_arrow,
    read_current_arrow,
)
from cinematch.engines.spark_session import session_conf

BUCKET = "cinematch-lake"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """moto's S3 server on 127.0.0.1, the AWS_* settings of docs/spark.md, one empty bucket; a boto3 client."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        pytest.fail("moto[server] is not installed: pip install -e '.[dev]' (the dev extra has it)")

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "cinematch-test", "AWS_SECRET_ACCESS_KEY": "cinematch-secret"}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield client
    server.stop()


def _keys(client: object, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)  # type: ignore[attr-defined]
    # keys ending in "/" are the empty directory markers pyarrow leaves; they hold no data
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []) if not obj["Key"].endswith("/"))


def _write_version(location: LakeLocation, table: str, data: pa.Table) -> str:
    """A version the way Spark leaves one: hive partition folders, part files, a _SUCCESS marker."""
    version = location.new_version(table)
    fs, path = arrow_filesystem(version)
    for month in sorted(set(data.column("month").to_pylist())):
        part = data.filter(pa.compute.equal(data.column("month"), month))
        pq.write_table(part, f"{path}/year=2024/month={month}/part-00000.snappy.parquet", filesystem=fs)
    with fs.open_output_stream(f"{path}/_SUCCESS"):
        pass
    return version


def test_s3_lake_versions_publish_and_read_through_the_documented_settings(s3, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", engine="spark", lake_uri=f"s3://{BUCKET}/cinematch/lake/")
    location = LakeLocation.from_settings(settings)
    assert location.root == f"s3a://{BUCKET}/cinematch/lake" and not location.is_local
    # the same settings reach Spark's S3A connector for a session CineMatch creates
    conf = session_conf(settings)
    assert conf["spark.hadoop.fs.s3a.endpoint"] == s3.meta.endpoint_url  # type: ignore[attr-defined]
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert conf["spark.hadoop.fs.s3a.endpoint.region"] == "us-east-1"

    table = "gold.movie_kpis"
    assert read_current_arrow(location, table) is None  # never published

    first = pa.table({"movie_id": [1, 2, 3], "avg_rating": [4.5, 3.0, 2.5], "month": [1, 1, 2]})
    v1 = _write_version(location, table, first)
    assert read_current_arrow(location, table) is None  # written, not yet visible
    assert publish_arrow(location, table, v1) == v1
    got = read_current_arrow(location, table)
    assert got is not None and got.sort_by("movie_id").select(["movie_id", "avg_rating"]) == first.select(
        ["movie_id", "avg_rating"]
    )

    # a second version stays invisible until its pointer is written; then the first one is gone
    second = pa.table({"movie_id": [7, 8], "avg_rating": [1.0, 5.0], "month": [3, 3]})
    v2 = _write_version(location, table, second)
    assert read_current_arrow(location, table).num_rows == 3  # type: ignore[union-attr]
    publish_arrow(location, table, v2)
    got = read_current_arrow(location, table)
    assert got is not None and sorted(got.column("movie_id").to_pylist()) == [7, 8]

    prefix = "cinematch/lake/gold/movie_kpis/"
    name = v2.rsplit("/", 1)[-1]
    assert _keys(s3, prefix) == [
        f"{prefix}{POINTER}",
        f"{prefix}{name}/_SUCCESS",
        f"{prefix}{name}/year=2024/month=3/part-00000.snappy.parquet",
    ]
    body = s3.get_object(Bucket=BUCKET, Key=f"{prefix}{POINTER}")["Body"].read()  # type: ignore[attr-defined]
    assert body == f"{name}\n".encode()

    with pytest.raises(BadInput, match="not a version"):
        publish_arrow(location, "gold.trending_movies", v2)


def test_s3_lake_goes_to_the_configured_endpoint(s3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    location = LakeLocation.from_settings(Settings(home=tmp_path, lake_uri=f"s3://{BUCKET}/lake"))
    fs, path = arrow_filesystem(location.table_uri("gold.genre_analytics"))
    assert fs.type_name == "s3" and path == f"{BUCKET}/lake/gold/genre_analytics"
    with pytest.raises(BadInput, match="pyarrow reads s3://"):
        arrow_filesystem("gs://bucket/lake")
    # the endpoint setting is what is used: with nothing listening there, reading fails instead of going elsewhere
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    with pytest.raises(OSError):
        read_current_arrow(location, "gold.genre_analytics")


@pytest.mark.spark
@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
def test_spark_written_lake_served_by_s3_reads_back(s3, tmp_path: Path) -> None:
    """Spark's own output (part files, .crc, _SUCCESS, year=/month= folders), published by the engine's code,
    copied to the S3 server as an s3a:// write would leave it, then read through s3:// with pyarrow."""
    import pyarrow.fs as pafs
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .getOrCreate()
    )
    try:
        local = LakeLocation(f"file://{tmp_path / 'lake'}")
        rows = [(u, m, float(u % 5 + 1), f"2024-0{1 + u % 3}-15") for u in range(1, 13) for m in (10, 20)]
        frame = spark.createDataFrame(rows, "user_id long, movie_id long, rating double, day string")
        frame = frame.selectExpr("*", "2024 as year", "cast(substr(day, 6, 2) as int) as month")
        version = local.new_version("silver.ratings")
        frame.write.partitionBy("year", "month").parquet(version)
        local.publish(spark, "silver.ratings", version)
        assert Path(version.removeprefix("file://"), "_SUCCESS").is_file()
    finally:
        spark.stop()

    remote = LakeLocation.from_settings(Settings(home=tmp_path / "home", lake_uri=f"s3://{BUCKET}/lake"))
    fs, path = arrow_filesystem(remote.root)
    pafs.copy_files(str(tmp_path / "lake"), path, destination_filesystem=fs)
    copied = [key.rsplit("/", 1)[-1] for key in _keys(s3, "lake/silver/ratings/")]
    assert "_CURRENT" in copied and "_SUCCESS" in copied and any(n.endswith(".parquet.crc") for n in copied)
    got = read_current_arrow(remote, "silver.ratings")  # Hadoop's checksum and marker files are not data
    assert got is not None and got.num_rows == 24
    assert sorted(got.column_names) == ["day", "movie_id", "rating", "user_id"]  # partition columns stay in folders
    assert sum(got.column("rating").to_pylist()) == 2 * sum(float(u % 5 + 1) for u in range(1, 13))
