"""Plumbing of the DAG tasks: settings built at run time, the write session, JSON references for XCom."""

# Library imports happen inside the functions: DAG files import this module at parse time without
# loading DuckDB or touching CINEMATCH_HOME.

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cinematch.core.log import get_logger
from cinematch.storage.protocol import Warehouse

if TYPE_CHECKING:
    from cinematch.core.settings import Settings

log = get_logger(__name__)


def task_settings() -> Settings:
    from cinematch.core.settings import get_settings

    return get_settings()


@contextmanager
def task_session(task: str) -> Iterator[tuple[Settings, Warehouse]]:
    """Settings plus the exclusive home lock and a read-write connection, named for the lock holder."""
    from cinematch.storage.warehouse import write_session

    settings = task_settings()
    with write_session(settings, f"airflow {task}") as con:
        yield settings, con


def plain(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def json_ref(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON round trip: what goes into XCom is plain JSON, whatever the library returned."""
    ref: dict[str, Any] = json.loads(json.dumps(doc, default=plain))
    return ref


def utc_day(value: date | datetime | str) -> date:
    """The UTC calendar day of a logical date (Airflow passes an aware datetime, tests may pass a string)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).date()
    return value


def resolve_file(settings: Settings, file: str) -> Path:
    """Absolute paths as given; relative ones are read from the landing folder (never the working directory)."""
    path = Path(file).expanduser()
    if path.is_absolute():
        return path
    if not (settings.landing_dir / path).resolve().is_relative_to(settings.landing_dir.resolve()):
        from cinematch.core.errors import BadInput

        raise BadInput(
            f"relative file {file!r} leaves the landing folder; pass an absolute path or a landing file name"
        )
    return settings.landing_dir / path


def run_tag(tag: str | None) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", tag or datetime.now(UTC).strftime("%Y%m%dT%H%M%S"))[:100]


def write_csv(path: Path, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """Write rows as CSV via a temp file and a rename (the warehouse may be PostgreSQL: no server-side COPY)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    tmp.replace(path)
