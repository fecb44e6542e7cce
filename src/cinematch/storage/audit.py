"""The audit trail every step writes: one ops.pipeline_runs row per step, with counts and durations."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, overload

from cinematch.core.log import get_logger
from cinematch.storage.protocol import Warehouse

log = get_logger(__name__)


def utcnow() -> datetime:
    """Naive UTC now (the warehouse stores naive UTC timestamps)."""
    return datetime.now(UTC).replace(tzinfo=None)


@overload
def naive_utc(moment: datetime) -> datetime: ...
@overload
def naive_utc(moment: None) -> None: ...
def naive_utc(moment: datetime | None) -> datetime | None:
    """``moment`` as naive UTC (what the warehouse stores); a naive value is taken to be UTC already.

    An aware value passed to the warehouse as it is would be cast through the session's time zone.
    """
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def record_run(
    con: Warehouse,
    pipeline: str,
    step: str,
    started_at: datetime,
    status: str,
    rows: int | None = None,
    details: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> None:
    """Append one row to ops.pipeline_runs (counts, durations, details as JSON)."""
    finished = utcnow()
    con.execute(
        "insert into ops.pipeline_runs values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run_id or new_run_id(),
            pipeline,
            step,
            started_at,
            finished,
            status,
            rows,
            (finished - started_at).total_seconds(),
            json.dumps(details or {}, default=str),
        ],
    )
