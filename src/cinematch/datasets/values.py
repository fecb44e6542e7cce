"""SQL expressions that type raw values strictly: ids are plain integers, epoch timestamps never overflow."""

from __future__ import annotations

import pyarrow as pa

# An id written as text must be a plain decimal integer ('42', '007'; '42.0' is 42). DuckDB's own
# try_cast('1.5' as bigint) rounds to 2 and reads '1e3' as 1000, so it only runs on text that passed this.
_DIGITS = "[0-9]+"
_DIGITS_POINT_ZEROS = "[0-9]+\\.0*"
_NUMBER = "-?[0-9]+(\\.[0-9]+)?"
# Epoch seconds are clamped into years 1653..5138 before to_timestamp, which raises (and would fail the whole
# batch) on values such as 1e17 s; a clamped value is then outside the accepted range and quarantined.
_EPOCH_MIN, _EPOCH_MAX = "-1e10", "1e11"


def integer_text(expr: str) -> str:
    """``expr`` (trimmed text) as BIGINT when it is a plain decimal integer; null otherwise or on overflow."""
    return (
        f"(case when regexp_full_match({expr}, '{_DIGITS}') then try_cast({expr} as bigint) "
        f"when regexp_full_match({expr}, '{_DIGITS_POINT_ZEROS}') then try_cast(split_part({expr}, '.', 1) as bigint)"
        " end)"
    )


def integer(col: str, t: pa.DataType) -> str:
    """Column ``col`` of Arrow type ``t`` as BIGINT: integers as they are (null when they do not fit), floats
    and decimals only when integral, text only when written as a plain integer."""
    if pa.types.is_integer(t):
        fits = pa.types.is_signed_integer(t) or t.bit_width < 64
        return f"cast({col} as bigint)" if fits else f"try_cast({col} as bigint)"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return f"(case when {col} = floor({col}) then try_cast({col} as bigint) end)"
    return integer_text(f"trim(cast({col} as varchar))")


def epoch(value: str) -> str:
    """Epoch seconds, or milliseconds when their magnitude is 1e11 or more, as TIMESTAMPTZ (never an error)."""
    seconds = f"(case when abs({value}) >= 1e11 then {value} / 1000 else {value} end)"
    return f"to_timestamp(least(greatest({seconds}, {_EPOCH_MIN}), {_EPOCH_MAX}))"


def timestamp_text(expr: str) -> str:
    """Text holding epoch seconds or milliseconds, or an ISO date or time, as a naive UTC TIMESTAMP."""
    return (
        f"(case when regexp_full_match({expr}, '{_NUMBER}') then {epoch(f'try_cast({expr} as double)')} "
        f"else try_cast({expr} as timestamptz) end at time zone 'UTC')"
    )


def timestamp_number(col: str) -> str:
    """A numeric column of epoch seconds or milliseconds as a naive UTC TIMESTAMP."""
    return f"({epoch(f'cast({col} as double)')} at time zone 'UTC')"
