"""Users and viewing-sessions CSV and content JSON: kinds, reading to canonical columns, validation in DuckDB.

Columns outside the known schema of a kind are never dropped: they go, flattened, into the ``extra`` JSON column
(``{"flattened_name": value}``, nulls left out; null when none).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from cinematch.datasets.content_json import read_content
from cinematch.datasets.delimited import FAULT, INTERNAL, RECORD, content_error, read_delimited
from cinematch.datasets.formats import check_file
from cinematch.datasets.raw_tables import duck, quote_name
from cinematch.datasets.values import integer_text, timestamp_text

VIEWING_KINDS = ("users", "sessions", "content")

# kind -> known (flattened) columns; the first ones listed in REQUIRED must be present in the file
COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("user_id", "signup_date", "country", "age_group", "subscription"),
    "sessions": ("session_id", "user_id", "movie_id", "started_at", "watch_seconds", "device"),
    "content": ("movie_id", "title", "runtime_minutes", "release_date", "genres", "languages",
                "production__studio", "production__country", "production__budget_usd", "cast__name",
                "cast__character"),
}  # fmt: skip
REQUIRED: dict[str, tuple[str, ...]] = {
    "users": ("user_id",),
    "sessions": ("session_id", "user_id", "movie_id", "started_at", "watch_seconds"),
    "content": ("movie_id",),
}
_ALIASES: dict[str, tuple[str, ...]] = {
    "user_id": ("user_id", "userid", "customer_id"),
    "movie_id": ("movie_id", "movieid", "content_id"),
    "session_id": ("session_id", "sessionid"),
    "signup_date": ("signup_date", "signup_at", "signed_up_at"),
    "age_group": ("age_group", "age_band"),
    "subscription": ("subscription", "plan", "subscription_plan"),
    "started_at": ("started_at", "start_time", "session_start"),
    "watch_seconds": ("watch_seconds", "watch_duration_seconds", "duration_seconds"),
    "runtime_minutes": ("runtime_minutes", "runtime"),
}
_LIST_COLUMNS = ("genres", "languages", "cast__name", "cast__character")
_FORMATS = {"users": "users_csv", "sessions": "sessions_csv", "content": "content_json"}

# SQL inserting one validated batch (ingest.py runs them with $batch, $file, $at; bad rows keep their raw JSON)
INSERTS: dict[str, tuple[str, str]] = {
    "users": (
        """insert into bronze.users select user_id, signup_date, country, age_group, subscription, extra,
           $batch, $file, $at from _good""",
        """insert into bronze.quarantine
           select $batch, reason, row_number, user_id, movie_id, null, null, raw, $file, $at from _bad""",
    ),
    "sessions": (
        """insert into bronze.sessions select session_id, user_id, movie_id, started_at, watch_seconds, device,
           extra, $batch, $file, $at from _good""",
        """insert into bronze.quarantine
           select $batch, reason, row_number, user_id, movie_id, null, null, raw, $file, $at from _bad""",
    ),
    "content": (
        f"""insert into bronze.content select {", ".join(COLUMNS["content"])}, extra, $batch, $file, $at
            from _good""",
        """insert into bronze.quarantine
           select $batch, reason, row_number, user_id, movie_id, null, null, raw, $file, $at from _bad""",
    ),
}


# --------------------------------------------------------------------------------------------- reading


def viewing_kind(path: Path) -> str | None:
    """``content`` for JSON, ``sessions``/``users`` for CSVs with their header; None for anything else."""
    with Path(path).open("rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[:1] in (b"[", b"{"):
        return "content"
    fields = {f.strip().strip('"').lower() for f in head.split(b"\n", 1)[0].decode("utf-8", "replace").split(",")}
    if "session_id" in fields:
        return "sessions"
    if "user_id" in fields and "rating" not in fields and fields & {"signup_date", "country", "age_group"}:
        return "users"
    return None


def _canonical(table: pa.Table, kind: str, path: Path) -> pa.Table:
    """Rename aliased known columns to their canonical names; refuse a file that lacks a required one.

    The CSV reader's own columns (``row_number``, ``_fault``, ``_record``) are left as they are.
    """
    data = [c for c in table.column_names if c not in INTERNAL]
    lower = {c.lower().strip(): c for c in data}
    renames: dict[str, str] = {}
    for name in COLUMNS[kind]:
        src = next((lower[a] for a in _ALIASES.get(name, (name,)) if a in lower), None)
        if src is not None:
            renames[src] = name
        elif name in REQUIRED[kind]:
            message = (f"{path} lacks a {name!r} column{{}}; a {kind} file needs {', '.join(REQUIRED[kind])} "
                       "(see README, Viewing sessions and content)")  # fmt: skip
            raise content_error(message.format(f" (found: {', '.join(data)[:200]})"), message.format(""))
    names = {c: renames.get(c, c) for c in data}
    clash = {"row_number", "extra"} & (set(names.values()) - set(COLUMNS[kind]))
    names = {c: f"{n}_" if n in clash else n for c, n in names.items()}
    return table.rename_columns([names.get(c, c) for c in table.column_names])


def read_viewing_raw(path: Path, kind: str) -> tuple[pa.Table, str]:
    """Read a users/sessions CSV or a content JSON file as raw (flattened) columns with ``row_number``."""
    path = Path(path)
    check_file(path)
    if kind == "content":
        return _canonical(read_content(path), kind, path), _FORMATS[kind]
    return _canonical(read_delimited(path, ",", header=True, quoted=True), kind, path), _FORMATS[kind]


# --------------------------------------------------------------------------------------------- validation


def _text(raw: pa.Table, col: str) -> str:
    """The column as trimmed text ('' becomes null), or null when the file lacks it."""
    if col not in raw.column_names:
        return "cast(null as varchar)"
    return f"nullif(trim(cast({quote_name(col)} as varchar)), '')"


def _list(raw: pa.Table, col: str) -> str:
    if col not in raw.column_names:
        return "cast(null as varchar[])"
    if pa.types.is_list(raw.schema.field(col).type):
        return f"cast({quote_name(col)} as varchar[])"
    return (f"list_filter(list_transform(string_split({_text(raw, col)}, '|'), lambda g: trim(g)), "
            "lambda g: g <> '')")  # fmt: skip


def _extra(raw: pa.Table, kind: str) -> str:
    unknown = [c for c in raw.column_names if c not in COLUMNS[kind] and c not in INTERNAL]
    if not unknown:
        return "cast(null as varchar)"
    entries = ", ".join("{'k': '" + c.replace("'", "''") + "', 'v': to_json(" + quote_name(c) + ")}" for c in unknown)
    return f"nullif(cast(to_json(map_from_entries(list_filter([{entries}], lambda e: e.v is not null))) as varchar), '{{}}')"


def _date(expr: str) -> str:
    return f"coalesce(try_cast({expr} as date), cast(try_cast({expr} as timestamp) as date))"


def _positive_id(col: str) -> str:
    return f"{col} is null or {col} <= 0"


def _fault(raw: pa.Table) -> str:
    """The CSV reader's reason and raw text for a malformed record (null for JSON)."""
    if FAULT in raw.column_names:
        return f"{FAULT} as fault, {RECORD} as record"
    return "cast(null as varchar) as fault, cast(null as varchar) as record"


def _typed_sql(raw: pa.Table, kind: str, latest: str) -> tuple[str, str, str]:
    """(typed select with a ``base_reason``, key column for in-batch duplicates, good columns)."""

    def t(c: str) -> str:
        return _text(raw, c)

    extra = _extra(raw, kind)
    if kind == "users":
        typed = f"""select row_number, {t("user_id")} as user_id_raw, cast(null as varchar) as movie_id_raw,
                {integer_text(t("user_id"))} as user_id, {_date(t("signup_date"))} as signup_date,
                {t("signup_date")} as signup_raw, upper({t("country")}) as country, {t("age_group")} as age_group,
                lower({t("subscription")}) as subscription, {extra} as extra, {_fault(raw)}
            from raw"""
        reason = f"""case when fault is not null then fault
                 when {_positive_id("user_id")} then 'user_id is not a positive integer'
                 when signup_raw is not null and signup_date is null then 'unparsable signup_date' end"""
        return f"select *, {reason} as base_reason from ({typed}) as t", "user_id", ", ".join(COLUMNS[kind])
    if kind == "sessions":
        typed = f"""select row_number, {t("user_id")} as user_id_raw, {t("movie_id")} as movie_id_raw,
                {t("session_id")} as session_id, {integer_text(t("user_id"))} as user_id,
                {integer_text(t("movie_id"))} as movie_id, {t("started_at")} as started_raw,
                {timestamp_text(t("started_at"))} as started_at, {t("watch_seconds")} as watch_raw,
                try_cast({t("watch_seconds")} as double) as watch_seconds, lower({t("device")}) as device,
                {extra} as extra, {_fault(raw)}
            from raw"""
        reason = f"""case when fault is not null then fault
                 when session_id is null then 'missing session_id'
                 when {_positive_id("user_id")} then 'user_id is not a positive integer'
                 when {_positive_id("movie_id")} then 'movie_id is not a positive integer'
                 when started_raw is null then 'missing started_at'
                 when started_at is null then 'unparsable started_at'
                 when started_at < timestamp '1970-01-01' or started_at > {latest} then 'started_at out of range'
                 when watch_raw is null then 'missing watch_seconds'
                 when watch_seconds is null or not isfinite(watch_seconds) then 'watch_seconds is not a number'
                 when watch_seconds < 0 then 'negative watch_seconds' end"""
        return f"select *, {reason} as base_reason from ({typed}) as t", "session_id", ", ".join(COLUMNS[kind])
    lists = ", ".join(f"{_list(raw, c)} as {c}" for c in _LIST_COLUMNS)
    typed = f"""select row_number, cast(null as varchar) as user_id_raw, {t("movie_id")} as movie_id_raw,
            {integer_text(t("movie_id"))} as movie_id, {t("title")} as title,
            {t("runtime_minutes")} as runtime_raw, try_cast({t("runtime_minutes")} as double) as runtime_minutes,
            {t("release_date")} as release_raw, {_date(t("release_date"))} as release_date, {lists},
            {t("production__studio")} as production__studio, upper({t("production__country")}) as production__country,
            {t("production__budget_usd")} as budget_raw,
            try_cast({t("production__budget_usd")} as double) as production__budget_usd, {extra} as extra,
            {_fault(raw)}
        from raw"""
    reason = f"""case when fault is not null then fault
             when {_positive_id("movie_id")} then 'movie_id is not a positive integer'
             when runtime_raw is not null and (runtime_minutes is null or not isfinite(runtime_minutes)
                  or runtime_minutes <= 0) then 'runtime_minutes is not a positive number'
             when release_raw is not null and release_date is null then 'unparsable release_date'
             when budget_raw is not null and (production__budget_usd is null or production__budget_usd < 0)
                  then 'production__budget_usd is not a non-negative number' end"""
    return f"select *, {reason} as base_reason from ({typed}) as t", "movie_id", ", ".join(COLUMNS[kind])


def normalize_viewing(raw: pa.Table, kind: str) -> tuple[pa.Table, pa.Table]:
    """Type and validate raw rows of ``kind``; return (good rows + ``extra``, quarantined rows with a reason).

    Within a batch the last row of a key (user_id, session_id, movie_id) wins; earlier ones are quarantined.
    """
    from datetime import UTC, datetime, timedelta

    latest = f"timestamp '{datetime.now(UTC).replace(tzinfo=None) + timedelta(days=1):%Y-%m-%d %H:%M:%S}'"
    typed, key, good_cols = _typed_sql(raw, kind, latest)
    con = duck()
    try:
        con.register("raw", raw)
        con.execute(
            f"""create temp table checked as
                select *, coalesce(base_reason, case when row_number() over (
                    partition by {key}, base_reason is null order by row_number desc) > 1
                    then 'duplicate {key} in batch (the last row wins)' end) as reason
                from ({typed}) as b"""
        )
        good = con.sql(f"select {good_cols}, extra from checked where reason is null order by row_number")
        good = good.to_arrow_table()
        internal = [c for c in (FAULT, RECORD) if c in raw.column_names]
        values = f"(select * exclude ({', '.join(internal)}) from raw)" if internal else "raw"
        bad = con.sql(
            f"""select c.row_number, c.reason, c.user_id_raw as user_id, c.movie_id_raw as movie_id,
                       coalesce(c.record, cast(to_json(r) as varchar)) as raw
                from checked c join {values} r using (row_number) where c.reason is not null
                order by c.row_number"""
        ).to_arrow_table()
    finally:
        con.close()
    return good, bad


__all__ = [
    "COLUMNS",
    "INSERTS",
    "VIEWING_KINDS",
    "normalize_viewing",
    "read_viewing_raw",
    "viewing_kind",
]  # fmt: skip
