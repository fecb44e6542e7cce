"""Cutting a rating history into a base and regular periods: bounds, empty periods, time zones, months."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pytest

from cinematch.core.errors import BadInput
from cinematch.datasets.periods import Every, Period, parse_every, period_bounds, split_periods

PARIS = ZoneInfo("Europe/Paris")


def ratings(times: list[datetime], tz: str | None = None, unit: str = "us") -> pa.Table:
    """One rating per time, user_id = position + 1 (so rows can be traced), as the readers type them."""
    n = len(times)
    return pa.table(
        {
            "user_id": pa.array(np.arange(1, n + 1), pa.int64()),
            "movie_id": pa.array(np.full(n, 7), pa.int64()),
            "rating": pa.array(np.full(n, 4.0), pa.float64()),
            "rated_at": pa.array(times, pa.timestamp(unit, tz=tz)),
        }
    )


def users(table: pa.Table) -> list[int]:
    return table.column("user_id").to_pylist()


# ---------------------------------------------------------------- parse_every
@pytest.mark.parametrize(
    ("text", "expected"),
    [("7d", Every(7, "d")), ("14d", Every(14, "d")), ("1d", Every(1, "d")), ("30d", Every(30, "d")),
     ("1mo", Every(1, "mo")), ("3mo", Every(3, "mo")), (" 7d ", Every(7, "d"))],
)  # fmt: skip
def test_parse_every_accepts_days_and_months(text: str, expected: Every) -> None:
    assert parse_every(text) == expected
    assert str(parse_every(text)) == text.strip()


@pytest.mark.parametrize("text", ["", "0d", "0mo", "-7d", "7", "d", "7 d", "1m", "1w", "7days", "1.5d", "mo", "7D"])
def test_parse_every_refuses_anything_else_in_one_line(text: str) -> None:
    with pytest.raises(BadInput) as err:
        parse_every(text)
    message = str(err.value)
    assert "\n" not in message
    assert repr(text) in message and "<N>d" in message and "<N>mo" in message


# ---------------------------------------------------------------- period_bounds
def test_day_periods_are_half_open_and_cover_the_end() -> None:
    start = datetime(2024, 1, 1)
    bounds = period_bounds(start, datetime(2024, 1, 15), Every(7, "d"))
    # 15 January is the start of the third week, so that week is included
    assert [(p.index, p.start.day, p.end.day) for p in bounds] == [(0, 1, 8), (1, 8, 15), (2, 15, 22)]
    assert all(p.start.tzinfo == UTC and p.end.tzinfo == UTC for p in bounds)
    assert [p.start for p in bounds[1:]] == [p.end for p in bounds[:-1]]
    assert len(period_bounds(start, datetime(2024, 1, 14, 23, 59), Every(7, "d"))) == 2
    assert len(period_bounds(start, datetime(2024, 1, 28), Every(14, "d"))) == 2
    assert period_bounds(start, start, Every(14, "d")) == [
        Period(0, datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 15, tzinfo=UTC))
    ]


def test_month_periods_clamp_the_31st_but_keep_anchoring_on_it() -> None:
    bounds = period_bounds(datetime(2024, 1, 31, 6, 30), datetime(2024, 6, 1), Every(1, "mo"))
    expected = ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30", "2024-05-31", "2024-06-30"]
    assert [f"{p.start:%Y-%m-%d}" for p in bounds] + [f"{bounds[-1].end:%Y-%m-%d}"] == expected
    assert {(p.start.hour, p.start.minute) for p in bounds} == {(6, 30)}
    two = period_bounds(datetime(2023, 11, 30), datetime(2024, 3, 1), Every(2, "mo"))
    assert [(f"{p.start:%Y-%m-%d}", f"{p.end:%Y-%m-%d}") for p in two] == [
        ("2023-11-30", "2024-01-30"), ("2024-01-30", "2024-03-30")
    ]  # fmt: skip
    # a non-leap year clamps to the 28th
    assert f"{period_bounds(datetime(2023, 1, 29), datetime(2023, 1, 30), Every(1, 'mo'))[0].end:%m-%d}" == "02-28"


def test_period_bounds_convert_aware_starts_to_utc() -> None:
    start = datetime(2024, 3, 1, tzinfo=PARIS)  # 29 February, 23:00 UTC
    bounds = period_bounds(start, datetime(2024, 3, 5, tzinfo=UTC), Every(7, "d"))
    assert bounds == [Period(0, datetime(2024, 2, 29, 23, tzinfo=UTC), datetime(2024, 3, 7, 23, tzinfo=UTC))]


def test_period_bounds_refuse_an_end_before_the_start_and_years_past_9999() -> None:
    with pytest.raises(BadInput, match="before the start"):
        period_bounds(datetime(2024, 1, 2), datetime(2024, 1, 1), Every(7, "d"))
    with pytest.raises(BadInput, match="9999"):
        period_bounds(datetime(2024, 1, 1), datetime(2024, 1, 1), Every(10**7, "d"))
    with pytest.raises(BadInput, match="9999"):
        period_bounds(datetime(2024, 1, 1), datetime(2024, 1, 1), Every(10**6, "mo"))


# ---------------------------------------------------------------- split_periods
def test_hand_checked_weekly_split() -> None:
    times = [
        datetime(2024, 1, 9, 12),  # user 1: period 1
        datetime(2023, 12, 31, 23, 59, 59),  # user 2: base
        datetime(2024, 1, 1),  # user 3: exactly the start, period 0
        datetime(2024, 1, 7, 23, 59, 59, 999999),  # user 4: last microsecond of period 0
        datetime(2024, 1, 8),  # user 5: exactly a boundary, period 1
        datetime(2024, 1, 29, 1),  # user 6: period 4 (periods 2 and 3 are empty)
        datetime(2023, 6, 1),  # user 7: base
    ]
    split = split_periods(ratings(times), datetime(2024, 1, 1), parse_every("7d"))
    assert users(split.base) == [2, 7]
    assert [users(p) for p in split.periods] == [[3, 4], [1, 5], [], [], [6]]
    assert [(p.index, f"{p.start:%m-%d}", f"{p.end:%m-%d}") for p in split.bounds] == [
        (0, "01-01", "01-08"), (1, "01-08", "01-15"), (2, "01-15", "01-22"), (3, "01-22", "01-29"),
        (4, "01-29", "02-05"),
    ]  # fmt: skip
    assert all(p.schema == split.base.schema for p in split.periods)


def test_no_period_after_the_last_rating_and_a_last_rating_on_a_boundary_opens_a_period() -> None:
    times = [datetime(2023, 12, 1), datetime(2024, 1, 3), datetime(2024, 1, 15)]
    split = split_periods(ratings(times), datetime(2024, 1, 1), Every(7, "d"))
    assert [users(p) for p in split.periods] == [[2], [], [3]]
    assert split.bounds[-1].start == datetime(2024, 1, 15, tzinfo=UTC)
    assert len(split_periods(ratings(times[:2]), datetime(2024, 1, 1), Every(7, "d")).periods) == 1


def test_fourteen_day_periods() -> None:
    times = [datetime(2023, 12, 1), datetime(2024, 1, 14), datetime(2024, 1, 15), datetime(2024, 1, 29)]
    split = split_periods(ratings(times), datetime(2024, 1, 1), parse_every("14d"))
    assert [users(p) for p in split.periods] == [[2], [3], [4]]


def test_month_split_from_the_31st() -> None:
    times = [
        datetime(2024, 1, 30),  # base
        datetime(2024, 2, 28, 23),  # period 0 [01-31, 02-29)
        datetime(2024, 2, 29),  # period 1 [02-29, 03-31)
        datetime(2024, 3, 30, 23, 59),  # period 1
        datetime(2024, 3, 31),  # period 2 [03-31, 04-30)
        datetime(2024, 5, 30),  # period 3 [04-30, 05-31)
    ]
    split = split_periods(ratings(times), datetime(2024, 1, 31), parse_every("1mo"))
    assert users(split.base) == [1]
    assert [users(p) for p in split.periods] == [[2], [3, 4], [5], [6]]


def test_aware_timestamps_in_another_zone_are_split_in_utc() -> None:
    # 1 January 00:30 in Paris is 31 December 23:30 UTC: before a UTC start of 1 January, so in the base.
    times = [
        datetime(2024, 1, 1, 0, 30, tzinfo=PARIS),
        datetime(2024, 1, 1, 1, 0, tzinfo=PARIS),  # exactly 00:00 UTC: the start, period 0
        datetime(2024, 1, 8, 0, 59, tzinfo=PARIS),  # 7 January 23:59 UTC: period 0
        datetime(2024, 1, 8, 1, 0, tzinfo=PARIS),  # 8 January 00:00 UTC: period 1
    ]
    table = ratings(times, tz="Europe/Paris")
    split = split_periods(table, datetime(2024, 1, 1), Every(7, "d"))
    assert users(split.base) == [1]
    assert [users(p) for p in split.periods] == [[2, 3], [4]]
    assert split.base.schema.field("rated_at").type == pa.timestamp("us", tz="Europe/Paris")
    # the same instants, naive in UTC, split the same way
    naive = [t.astimezone(UTC).replace(tzinfo=None) for t in times]
    same = split_periods(ratings(naive), datetime(2024, 1, 1), Every(7, "d"))
    assert users(same.base) == [1] and [users(p) for p in same.periods] == [[2, 3], [4]]


def test_an_aware_start_is_converted_to_utc() -> None:
    times = [datetime(2024, 1, 1, 2), datetime(2024, 1, 1, 4), datetime(2024, 1, 2)]
    start = datetime(2024, 1, 1, 3, tzinfo=timezone(timedelta(hours=-2)))  # 05:00 UTC
    split = split_periods(ratings(times), start, Every(1, "d"))
    assert users(split.base) == [1, 2]
    assert [users(p) for p in split.periods] == [[3]]
    assert split.bounds[0].start == datetime(2024, 1, 1, 5, tzinfo=UTC)


@pytest.mark.parametrize("unit", ["s", "ms", "ns"])
def test_other_timestamp_units_split_like_microseconds(unit: str) -> None:
    times = [datetime(2023, 12, 31, 23, 59, 59), datetime(2024, 1, 1), datetime(2024, 1, 8), datetime(2024, 1, 9)]
    split = split_periods(ratings(times, unit=unit), datetime(2024, 1, 1), Every(7, "d"))
    assert users(split.base) == [1]
    assert [users(p) for p in split.periods] == [[2], [3, 4]]


def test_a_fractional_start_with_second_timestamps() -> None:
    times = [datetime(2024, 1, 1, 0, 0, 0), datetime(2024, 1, 1, 0, 0, 1), datetime(2024, 1, 1, 0, 0, 2)]
    split = split_periods(ratings(times, unit="s"), datetime(2024, 1, 1, 0, 0, 0, 500_000), Every(1, "d"))
    assert users(split.base) == [1] and [users(p) for p in split.periods] == [[2, 3]]


def test_rows_are_conserved_whatever_their_order() -> None:
    rng = np.random.default_rng(7)
    n = 5_000
    base = datetime(2023, 1, 1)
    seconds = rng.integers(0, 400 * 86_400, n)
    times = [base + timedelta(seconds=int(s)) for s in seconds]
    table = ratings(times)
    split = split_periods(table, datetime(2023, 6, 15), parse_every("1mo"))
    parts = [split.base, *split.periods]
    assert sum(p.num_rows for p in parts) == n
    assert sorted(u for p in parts for u in users(p)) == list(range(1, n + 1))
    for period, bound in zip(split.periods, split.bounds, strict=True):
        ts = period.column("rated_at").to_pylist()
        assert all(bound.start <= t.replace(tzinfo=UTC) < bound.end for t in ts)
        assert users(period) == sorted(users(period))  # input order kept within a period
    assert split.periods[-1].num_rows > 0
    shuffled = table.take(pa.array(rng.permutation(n)))
    again = split_periods(shuffled, datetime(2023, 6, 15), parse_every("1mo"))
    assert sorted(users(again.base)) == sorted(users(split.base))
    assert [sorted(users(p)) for p in again.periods] == [sorted(users(p)) for p in split.periods]


def test_split_refuses_unusable_histories_in_one_line() -> None:
    times = [datetime(2024, 1, 1), datetime(2024, 1, 5)]
    cases = [
        (ratings(times), datetime(2024, 1, 5, 0, 0, 1), "after the last rating"),
        (ratings(times), datetime(2024, 1, 1), "base is empty"),
        (ratings(times), datetime(2023, 1, 1), "base is empty"),
        (ratings([]), datetime(2024, 1, 1), "empty"),
        (ratings(times).drop_columns(["rated_at"]), datetime(2024, 1, 1), "no rated_at"),
        (ratings(times).set_column(3, "rated_at", pa.array(["x", "y"])), datetime(2024, 1, 1), "timestamp"),
        (ratings(times).set_column(3, "rated_at", pa.array([None, times[1]], pa.timestamp("us"))),
         datetime(2024, 1, 2), "no rated_at"),
    ]  # fmt: skip
    for table, start, words in cases:
        with pytest.raises(BadInput, match=words) as err:
            split_periods(table, start, Every(7, "d"))
        assert "\n" not in str(err.value)
    # the last rating exactly at the start is not "after": it forms the only period
    assert [users(p) for p in split_periods(ratings(times), datetime(2024, 1, 5), Every(7, "d")).periods] == [[2]]
