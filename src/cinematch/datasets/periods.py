"""Cutting a rating history into a base and regular periods (days or calendar months) for a replay.

A replay treats everything before its start as the base and each following period as one batch. Periods are
half-open ``[start, end)`` intervals with UTC bounds, so a rating exactly on a boundary belongs to the later
period. The timeline is regular: a period without ratings between two with ratings is kept (empty), so period
``i`` always starts at the ``i``-th step from the start; it stops with the period that holds the last rating.

Month steps are calendar months counted from the start, each bound computed from the start itself rather than
from the previous bound: a start on 31 January gives 29 February (clamped to the month's last day), then
31 March, 30 April, 31 May (the original day comes back whenever the month has it).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cinematch.core.errors import BadInput

_EVERY = re.compile(r"([0-9]+)(d|mo)")
_ACCEPTED = "<N>d (days, e.g. 7d or 14d) or <N>mo (calendar months, e.g. 1mo), with N >= 1"
# Nanoseconds per unit of an Arrow timestamp: bounds are compared in the column's own unit.
_NS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Every:
    """A period length: ``count`` days (unit ``"d"``) or ``count`` calendar months (unit ``"mo"``)."""

    count: int
    unit: str

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"


@dataclass(frozen=True)
class Period:
    """Period ``index`` (0 for the first period after the start): the half-open UTC interval [start, end)."""

    index: int
    start: datetime
    end: datetime


@dataclass(frozen=True, eq=False)
class Split:
    """A history cut at a start: ``base`` (rows before it), one table per period and the periods' bounds.

    ``periods[i]`` holds the rows of ``bounds[i]``; every table keeps the input's schema and row order.
    """

    base: pa.Table
    periods: list[pa.Table]
    bounds: list[Period]


def parse_every(text: str) -> Every:
    """``"7d"``, ``"14d"``, any ``"<N>d"``, or ``"<N>mo"`` (calendar months), N >= 1; else BadInput."""
    match = _EVERY.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or int(match.group(1)) < 1:
        raise BadInput(f"bad period length {text!r}: use {_ACCEPTED}")
    return Every(int(match.group(1)), match.group(2))


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime; a naive one is taken as UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _add_months(anchor: datetime, months: int) -> datetime:
    """``anchor`` moved by ``months`` calendar months, its day clamped to the target month's last day."""
    years, month0 = divmod(anchor.month - 1 + months, 12)
    year, month = anchor.year + years, month0 + 1
    if year > datetime.max.year:
        raise OverflowError("year out of range")
    return anchor.replace(year=year, month=month, day=min(anchor.day, calendar.monthrange(year, month)[1]))


def _bound(start: datetime, every: Every, steps: int) -> datetime:
    """The bound ``steps`` periods after ``start`` (always computed from the start, never chained)."""
    try:
        if every.unit == "mo":
            return _add_months(start, every.count * steps)
        return start + timedelta(days=every.count * steps)
    except OverflowError:
        raise BadInput(
            f"periods of {every} from {start:%Y-%m-%d} run past the year 9999; use shorter periods"
        ) from None


def period_bounds(start: datetime, end: datetime, every: Every) -> list[Period]:
    """The periods from ``start`` until the one that contains ``end`` (so they cover start <= t <= end).

    Naive datetimes are taken as UTC, aware ones converted to UTC; the bounds returned are aware UTC datetimes.
    ``end`` before ``start`` raises BadInput; ``end == start`` gives one period.
    """
    first, last = as_utc(start), as_utc(end)
    if last < first:
        raise BadInput(f"the end {last:%Y-%m-%d %H:%M:%S} is before the start {first:%Y-%m-%d %H:%M:%S} (UTC)")
    periods: list[Period] = []
    lower = first
    while lower <= last:  # one iteration per period, never per row
        upper = _bound(first, every, len(periods) + 1)
        periods.append(Period(len(periods), lower, upper))
        lower = upper
    return periods


def _to_units(moment: datetime, unit: str) -> int:
    """The first integer tick of ``unit`` at or after ``moment`` (exact integer arithmetic, no float)."""
    delta = moment - _EPOCH
    ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    return -(-ns // _NS_PER_UNIT[unit])


def _ticks(ratings: pa.Table) -> tuple[np.ndarray, str]:
    """``rated_at`` as int64 UTC ticks of its own unit (aware and naive timestamps store UTC alike)."""
    if "rated_at" not in ratings.column_names:
        raise BadInput("the ratings have no rated_at column; a replay needs the time of every rating")
    column = ratings.column("rated_at")
    if not pa.types.is_timestamp(column.type):
        raise BadInput(f"rated_at must be a timestamp column to split by period, not {column.type}")
    if column.null_count:
        raise BadInput(f"{column.null_count} ratings have no rated_at; drop or fix them before splitting by period")
    ticks = pc.cast(column, pa.int64()).to_numpy()
    return np.asarray(ticks, dtype=np.int64), column.type.unit


def split_periods(ratings: pa.Table, start: datetime, every: Every) -> Split:
    """Rows of ``ratings`` with rated_at < ``start`` (the base), then one table per period from ``start``.

    The periods run until the one holding the last rating, empty ones in the middle included. A naive
    rated_at column is taken as UTC. BadInput when there is no rating, when ``start`` is after the last one, or
    when nothing precedes ``start`` (a replay needs a base to train on).
    """
    ticks, unit = _ticks(ratings)
    first = as_utc(start)
    when = f"{first:%Y-%m-%d %H:%M:%S} UTC"
    if ticks.size == 0:
        raise BadInput("the ratings are empty: there is nothing to replay")
    last_tick = int(ticks.max())
    last = _EPOCH + timedelta(microseconds=last_tick * _NS_PER_UNIT[unit] // 1_000)
    if _to_units(first, unit) > last_tick:
        raise BadInput(f"the start {when} is after the last rating ({last:%Y-%m-%d %H:%M:%S} UTC): nothing to replay")
    bounds = period_bounds(first, last, every)
    edges = np.array([_to_units(p.start, unit) for p in bounds] + [_to_units(bounds[-1].end, unit)], dtype=np.int64)
    # Period of each row: -1 for the base; a tick equal to a bound goes right (side="right"), to the later period.
    slot = np.searchsorted(edges, ticks, side="right") - 1
    in_base = slot < 0
    if not in_base.any():
        raise BadInput(f"no rating is before the start {when}: the base is empty; choose a later start")
    base = ratings.take(pa.array(np.flatnonzero(in_base)))
    # One stable sort groups the rows by period and keeps their input order within it.
    order = np.argsort(slot, kind="stable")[int(in_base.sum()) :]
    ends = np.cumsum(np.bincount(slot[~in_base], minlength=len(bounds)))
    starts = np.concatenate([[0], ends[:-1]])
    periods = [ratings.take(pa.array(order[a:b])) for a, b in zip(starts, ends, strict=True)]
    return Split(base, periods, bounds)
