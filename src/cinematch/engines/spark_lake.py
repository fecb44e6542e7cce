"""Where the Spark engine keeps its lake: a local folder (symlink swaps) or an object-store URI (pointer files)."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from cinematch.core.errors import BadInput
from cinematch.storage import lake
from cinematch.storage.audit import new_run_id

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

    from cinematch.core.settings import Settings

POINTER = "_CURRENT"
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Hadoop names the S3 connector s3a; users and DuckDB write s3://.
_HADOOP_SCHEMES = {"s3": "s3a", "s3n": "s3a"}
_TABLE_RE = re.compile(r"[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*")


def normalize_uri(uri: str) -> str:
    """The URI as Spark/Hadoop wants it: ``s3://b/p/`` → ``s3a://b/p``; a plain path is made absolute."""
    uri = uri.strip()
    if not uri:
        raise BadInput("CINEMATCH_LAKE_URI is empty; unset it to use CINEMATCH_HOME/lake")
    if not _SCHEME_RE.match(uri):
        return str(Path(uri).expanduser().resolve())
    parsed = urlparse(uri)
    scheme = _HADOOP_SCHEMES.get(parsed.scheme.lower(), parsed.scheme.lower())
    if scheme in ("s3a", "gs", "abfs", "abfss", "wasb", "wasbs") and not parsed.netloc:
        raise BadInput(f"lake URI {uri!r} names no bucket; expected e.g. s3://bucket/cinematch/lake")
    if scheme == "file" and parsed.netloc not in ("", "localhost"):
        raise BadInput(f"lake URI {uri!r}: file URIs must be file:///absolute/path")
    path = parsed.path.rstrip("/")
    return f"{scheme}://{parsed.netloc}{path}"


@dataclass(frozen=True)
class LakeLocation:
    """The lake root and how table versions are published there.

    A plain path is the local lake of ``lake.write_table``: ``<root>/<schema>/.<name>-<id>/`` version folders and
    an atomically swapped symlink ``<root>/<schema>/<name>``. Any URI with a scheme (``s3://``, ``file://``, ...)
    uses the object-store layout, since object stores have no symlinks: ``<root>/<schema>/<name>/v-<id>/`` and a
    one-line ``<root>/<schema>/<name>/_CURRENT`` object naming the current version (a single PUT, so readers see
    the old version or the new one). Readers of an object-store lake read ``_CURRENT`` first.
    """

    root: str

    @classmethod
    def from_settings(cls, settings: Settings) -> LakeLocation:
        return cls(normalize_uri(settings.lake_uri) if settings.lake_uri else str(settings.lake_dir))

    @property
    def is_local(self) -> bool:
        return not _SCHEME_RE.match(self.root)

    @property
    def local_dir(self) -> Path:
        if not self.is_local:
            raise BadInput(f"the lake {self.root} is not a local folder")
        return Path(self.root)

    def table_uri(self, table: str) -> str:
        """``silver.ratings`` → ``<root>/silver/ratings`` (the symlink, or the object-store table folder)."""
        if not _TABLE_RE.fullmatch(table):
            raise BadInput(f"not a lake table name: {table!r} (expected schema.table)")
        schema, name = table.split(".")
        return str(lake.table_path(Path(self.root), table)) if self.is_local else f"{self.root}/{schema}/{name}"

    def new_version(self, table: str) -> str:
        """A fresh, not yet visible location to write the next version of ``table`` into."""
        if self.is_local:
            link = Path(self.table_uri(table))
            link.parent.mkdir(parents=True, exist_ok=True)
            return str(link.parent / f".{link.name}-{new_run_id()}")
        return f"{self.table_uri(table)}/v-{new_run_id()}"

    def duckdb_glob(self, version: str) -> str:
        """Every Parquet file of a local version folder (hive partitions included)."""
        return str(Path(version) / "**" / "*.parquet")

    def publish(self, spark: SparkSession | None, table: str, version: str) -> str:
        """Make ``version`` the current one of ``table`` atomically, then remove the older versions."""
        if self.is_local:
            return _publish_local(Path(self.table_uri(table)), Path(version))
        if spark is None:
            raise BadInput("publishing to an object-store lake needs a Spark session")
        return _publish_remote(spark, self.table_uri(table), version)

    def discard(self, spark: SparkSession | None, version: str) -> None:
        """Remove a version that was written but must not be published (a failed quality gate)."""
        if self.is_local:
            shutil.rmtree(version, ignore_errors=True)
        elif spark is not None:
            fs, path = _fs(spark, version)
            fs.delete(path, True)


def _publish_local(link: Path, version: Path) -> str:
    # The same swap as lake.write_table, so both engines' versions share one naming and one cleanup rule.
    tmp_link = link.parent / f".{link.name}.link-{version.name}"
    os.symlink(version.name, tmp_link)
    os.replace(tmp_link, link)
    for old in link.parent.glob(f".{link.name}-*"):
        if old.name != version.name:
            shutil.rmtree(old, ignore_errors=True)
    return str(link)


def _fs(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    """The Hadoop FileSystem of ``uri`` and its Path (s3a, gs, file, ... whichever connector is on the classpath)."""
    jvm: Any = spark.sparkContext._jvm  # py4j: the JVM's classes are untyped
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def _publish_remote(spark: SparkSession, table_uri: str, version: str) -> str:
    fs, _ = _fs(spark, table_uri)
    jvm: Any = spark.sparkContext._jvm
    pointer = jvm.org.apache.hadoop.fs.Path(f"{table_uri}/{POINTER}")
    name = version.rsplit("/", 1)[-1]
    if table_uri.startswith("s3a://"):
        # S3A uploads a small object in one PUT on close, and an overwriting PUT is atomic on S3; a rename there
        # is copy + delete and, onto an existing pointer, would need a delete first (a window with no pointer).
        out = fs.create(pointer, True)
        try:
            out.write((name + "\n").encode())
        finally:
            out.close()
        _drop_other_versions(fs, jvm, table_uri, name)
        return f"{table_uri}/{name}"
    # Written aside, then renamed: no half-written pointer on file:// or HDFS.
    tmp = jvm.org.apache.hadoop.fs.Path(f"{table_uri}/.{POINTER}.tmp-{name}")
    out = fs.create(tmp, True)
    try:
        out.write((name + "\n").encode())
    finally:
        out.close()
    if not fs.rename(tmp, pointer):
        fs.delete(pointer, False)
        if not fs.rename(tmp, pointer):
            raise OSError(f"cannot publish {name} as {table_uri}/{POINTER}")
    _drop_other_versions(fs, jvm, table_uri, name)
    return f"{table_uri}/{name}"


def _drop_other_versions(fs: Any, jvm: Any, table_uri: str, keep: str) -> None:
    for status in fs.listStatus(jvm.org.apache.hadoop.fs.Path(table_uri)):
        child = status.getPath()
        if status.isDirectory() and child.getName().startswith("v-") and child.getName() != keep:
            fs.delete(child, True)


def data_files(spark: SparkSession, version: str) -> list[str]:
    """Every Parquet file under a written version (none after an empty partitioned write)."""
    fs, path = _fs(spark, version)
    if not fs.exists(path):
        return []
    found = []
    files = fs.listFiles(path, True)
    while files.hasNext():
        file_path = files.next().getPath()
        name = file_path.getName()
        if name.endswith(".parquet") and not name.startswith((".", "_")):
            found.append(file_path.toString())
    return sorted(found)


def read_version(spark: SparkSession, version: str, schema: StructType | None = None) -> DataFrame:
    """The data files of a version folder as one DataFrame; empty with ``schema`` when there are none.

    Files are listed explicitly: Spark skips a path whose own name starts with "." (local version folders do)
    and would look for streaming metadata in a glob. Partition columns are not read back; every partitioned
    table keeps its partition source column (``rated_at``) in the files.
    """
    files = data_files(spark, version)
    if not files:
        if schema is None:
            raise FileNotFoundError(f"no Parquet files in {version}")
        return spark.createDataFrame([], schema)
    return spark.read.parquet(*files)


def current_version(spark: SparkSession, location: LakeLocation, table: str) -> str | None:
    """The readable location of ``table``'s current version (None when it was never published)."""
    if location.is_local:
        link = Path(location.table_uri(table))
        return str(link.resolve()) if link.exists() else None
    fs, _ = _fs(spark, location.table_uri(table))
    jvm: Any = spark.sparkContext._jvm
    pointer = jvm.org.apache.hadoop.fs.Path(f"{location.table_uri(table)}/{POINTER}")
    if not fs.exists(pointer):
        return None
    stream = fs.open(pointer)
    try:
        reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream))
        name = (reader.readLine() or "").strip()
    finally:
        stream.close()
    return f"{location.table_uri(table)}/{name}" if name else None


# --- the same lake through pyarrow (no Spark, no Hadoop): object stores for any Arrow reader ---------------------


def arrow_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow FileSystem and path for a lake URI (``s3://``/``s3a://``, ``file://`` or a plain path).

    S3 takes the settings the Spark engine maps to S3A: ``AWS_ENDPOINT_URL`` (MinIO or any S3-compatible server;
    ``http://`` or ``https://``, path-style addressing), ``AWS_REGION``, and the keys from
    ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (or the AWS SDK's usual chain when they are unset).
    """
    import pyarrow.fs as pafs

    root = normalize_uri(uri)
    parsed = urlparse(root)
    if parsed.scheme == "s3a":
        options: dict[str, Any] = {"region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")}
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            ep = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
            options.update(endpoint_override=ep.netloc, scheme=ep.scheme or "https")
        if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
            options.update(access_key=os.environ["AWS_ACCESS_KEY_ID"], secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                           session_token=os.environ.get("AWS_SESSION_TOKEN"))  # fmt: skip
        return pafs.S3FileSystem(**{k: v for k, v in options.items() if v is not None}), f"{parsed.netloc}{parsed.path}"
    if parsed.scheme == "file" or not parsed.scheme:
        return pafs.LocalFileSystem(), parsed.path if parsed.scheme else root
    raise BadInput(f"lake URI {uri!r}: pyarrow reads s3://, file:// or local paths; use Spark for {parsed.scheme}://")


def publish_arrow(location: LakeLocation, table: str, version: str) -> str:
    """``publish`` through pyarrow: one PUT of ``_CURRENT`` naming ``version``, then older versions removed."""
    if location.is_local:
        raise BadInput(f"the lake {location.root} is a local folder: use LakeLocation.publish")
    table_uri = location.table_uri(table)
    name = version.rstrip("/").rsplit("/", 1)[-1]
    if not version.rstrip("/") == f"{table_uri}/{name}" or not name.startswith("v-"):
        raise BadInput(f"{version!r} is not a version of {table_uri} (expected {table_uri}/v-<id>)")
    fs, table_path = arrow_filesystem(table_uri)
    with fs.open_output_stream(f"{table_path}/{POINTER}") as out:
        out.write((name + "\n").encode())
    import pyarrow.fs as pafs

    for info in fs.get_file_info(pafs.FileSelector(table_path)):
        if info.type == pafs.FileType.Directory and info.base_name.startswith("v-") and info.base_name != name:
            fs.delete_dir(info.path)
    return f"{table_uri}/{name}"


def read_current_arrow(location: LakeLocation, table: str) -> pa.Table | None:
    """The published version of an object-store lake table, read with pyarrow (None when never published).

    Reads ``_CURRENT`` first, then only the Parquet files of the version it names, so a version being written
    or a failed, unpublished one is never seen. Hive partition folders are not turned into columns: every
    partitioned table keeps its source column (``rated_at``) in the files.
    """
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    if location.is_local:
        raise BadInput(f"the lake {location.root} is a local folder: read {location.table_uri(table)} directly")
    fs, table_path = arrow_filesystem(location.table_uri(table))
    try:
        with fs.open_input_stream(f"{table_path}/{POINTER}") as stream:
            name = stream.read().decode().strip()
    except FileNotFoundError:
        return None
    if not name.startswith("v-") or "/" in name:
        raise OSError(f"{location.table_uri(table)}/{POINTER} names no version: {name!r}")
    files = [
        info.path
        for info in fs.get_file_info(pafs.FileSelector(f"{table_path}/{name}", recursive=True))
        if info.is_file and info.base_name.endswith(".parquet") and not info.base_name.startswith((".", "_"))
    ]
    if not files:
        raise FileNotFoundError(f"no Parquet files in {location.table_uri(table)}/{name}")
    return ds.dataset(sorted(files), format="parquet", filesystem=fs).to_table()
