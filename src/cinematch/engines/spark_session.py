"""The Spark session CineMatch uses: an active or spark-submit session as is, else one built from the settings."""

from __future__ import annotations

import os
import re
import warnings
from typing import TYPE_CHECKING

from cinematch.core.log import get_logger, timed
from cinematch.core.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = get_logger(__name__)


_LOCAL_MASTER = re.compile(r"local(\[(\*|\d+)(,\d+)?\])?$")


def session_conf(settings: Settings) -> dict[str, str]:
    """Configuration for a session CineMatch creates itself (an existing or spark-submit session is reused as is).

    Local masters get a small shuffle width (Spark's 200 partitions cost more than they split on 2-8 cores) and
    4 GB of driver memory unless SPARK_DRIVER_MEMORY is set. An ``s3://`` lake maps the usual AWS variables to
    the S3A connector: AWS_ENDPOINT_URL (MinIO: path-style access) and AWS_REGION; keys come from
    AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY through S3A's default credential chain.
    """
    conf = {
        "spark.app.name": "cinematch",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
    }
    match = _LOCAL_MASTER.match(settings.spark_master.strip())
    if match:
        cores = (os.cpu_count() or 2) if match.group(2) in (None, "*") else int(match.group(2))
        conf["spark.sql.shuffle.partitions"] = str(max(4, 2 * cores))
        if "SPARK_DRIVER_MEMORY" not in os.environ:
            conf["spark.driver.memory"] = "4g"
    if settings.lake_uri and settings.lake_uri.strip().lower().startswith(("s3://", "s3a://", "s3n://")):
        if os.environ.get("AWS_ENDPOINT_URL"):
            conf["spark.hadoop.fs.s3a.endpoint"] = os.environ["AWS_ENDPOINT_URL"]
            conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
        if os.environ.get("AWS_REGION"):
            conf["spark.hadoop.fs.s3a.endpoint.region"] = os.environ["AWS_REGION"]
    return conf


def spark_session(settings: Settings) -> SparkSession:
    """The active Spark session (a test's, an earlier call's), else a new one.

    Under spark-submit the session is built from the command line's master and ``--conf`` alone; otherwise
    from ``settings.spark_master`` and :func:`session_conf`.
    """
    # The engine hands data over through Arrow and Parquet, never pandas: PySpark's pandas-3 notice is noise here.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is None:
        builder = SparkSession.builder
        # spark-submit starts the JVM first and hands the driver its gateway port: its conf already holds the master.
        if not os.environ.get("PYSPARK_GATEWAY_PORT"):
            builder = builder.master(settings.spark_master)
            for key, value in session_conf(settings).items():
                builder = builder.config(key, value)
        with timed(log, "spark_session", master=settings.spark_master):
            spark = builder.getOrCreate()
    # Silver holds naive UTC timestamps (TIMESTAMP_NTZ in Spark); UTC keeps any LTZ conversion an identity.
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    return spark
