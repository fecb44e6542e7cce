"""spark-submit entry points `etl` and `train`: the library calls of the Airflow tasks, on spark-submit's session.

    spark-submit --master local[2] src/cinematch/spark_submit.py etl --home DIR [--full-refresh]
    spark-submit --master local[2] src/cinematch/spark_submit.py train --home DIR [--force true]

The job forces CINEMATCH_ENGINE=spark, uses the session spark-submit configured (master, memory, ``--conf``),
takes the home's write lock like every writer, and prints one JSON document: the reference the Airflow task of
the same step returns. With ``--tag`` it also stores that reference as HOME/runs/spark/<tag>-<command>.json, which
is how the SparkSubmitOperator DAG hands it to the next task. The driver must run a Python with CineMatch
installed: spark-submit uses PYSPARK_DRIVER_PYTHON / PYSPARK_PYTHON (or ``--conf spark.pyspark.python=...``).

Only the standard library is imported at module level: DAG files import this module to find its path.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

JOB = str(Path(__file__).resolve())
REFS_DIR = Path("runs") / "spark"
COMMANDS = ("etl", "train")


def _flag(value: str) -> bool:
    # Airflow templates render booleans as "True"/"False"; accept the usual spellings.
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spark_submit.py", description="CineMatch jobs for spark-submit")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("etl", "bronze → silver → gold on Spark"), ("train", "Spark MLlib ALS → registry")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--home", help="CINEMATCH_HOME (default: the environment's)")
        cmd.add_argument("--tag", help="also store the JSON reference as HOME/runs/spark/<tag>-<command>.json")
    etl = sub.choices["etl"]
    etl.add_argument("--full-refresh", nargs="?", const="true", default="false", type=_flag)
    etl.add_argument("--logical-date", help="pin gold to the end of this day (YYYY-MM-DD)")
    train = sub.choices["train"]
    train.add_argument("--force", nargs="?", const="true", default="false", type=_flag,
                       help="train even if nothing new was merged since the champion")  # fmt: skip
    return parser


def ref_path(home: Path, command: str, tag: str) -> Path:
    """Where ``--tag`` stores a reference (the tag is reduced to a safe file name, e.g. an Airflow run id)."""
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}; expected one of {', '.join(COMMANDS)}")
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", tag)[:120]
    return home / REFS_DIR / f"{safe}-{command}.json"


def read_ref(command: str, tag: str) -> dict[str, Any]:
    """The reference a tagged job stored (used by the task after a SparkSubmitOperator)."""
    from cinematch.core.errors import CineMatchError
    from cinematch.core.settings import get_settings

    path = ref_path(get_settings().home_dir, command, tag)
    if not path.is_file():
        raise CineMatchError(f"no result of the spark job `{command}` at {path}; see the spark-submit task's log")
    ref: dict[str, Any] = json.loads(path.read_text())
    return ref


def _write_ref(home: Path, command: str, tag: str, ref: dict[str, Any]) -> None:
    path = ref_path(home, command, tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(ref, default=str) + "\n")
    os.replace(tmp, path)


def _local_shuffle_width(spark: Any) -> None:
    """On a local master, the engine's shuffle width unless the submitter chose one (``--conf``).

    spark-submit's session keeps Spark's 200 shuffle partitions, which on 2-8 local cores cost more than they
    split (the SparkSubmitOperator passes no SQL settings); it is a runtime setting, so it can be set here.
    """
    from cinematch.core.settings import Settings
    from cinematch.engines.spark_session import session_conf

    conf = spark.sparkContext.getConf()
    if conf.contains("spark.sql.shuffle.partitions"):
        return
    width = session_conf(Settings(spark_master=spark.sparkContext.master)).get("spark.sql.shuffle.partitions")
    if width:
        spark.conf.set("spark.sql.shuffle.partitions", width)


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse ``argv`` and run the job; returns the JSON reference (raises CineMatchError on failure)."""
    args = _parser().parse_args(argv)
    if args.home:
        os.environ["CINEMATCH_HOME"] = str(Path(args.home).expanduser().resolve())
    os.environ["CINEMATCH_ENGINE"] = "spark"

    from cinematch.core.settings import get_settings
    from cinematch.engines.spark_session import spark_session
    from cinematch.pipelines import data_tasks, model_tasks

    settings = get_settings()
    spark = spark_session(settings)  # spark-submit's session, made active before the library looks for one
    _local_shuffle_width(spark)
    if args.command == "etl":
        ref = data_tasks.build_silver_gold(logical_date=args.logical_date, full_refresh=args.full_refresh)
    else:
        ref = model_tasks.train_model(force=args.force)
    ref = {"command": args.command, "engine": "spark", **ref}
    if args.tag:
        _write_ref(settings.home_dir, args.command, args.tag, ref)
    return ref


def main(argv: list[str] | None = None) -> int:
    """Exit codes as the CLI's: 0 done, 2 bad input, 1 any other failure (one line on stderr)."""
    from cinematch.core.errors import BadInput, CineMatchError

    try:
        ref = run(argv)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CineMatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(ref, default=str))
    return 0


if __name__ == "__main__":
    # Run as a script, this file's folder heads sys.path and its modules (spark.py, ...) would shadow top-level
    # names; CineMatch itself is imported from the installed package.
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.exit(main())
