"""Users and viewing-sessions CSV and nested content JSON: reading, flattening, validation, generation.

Flattening scheme (content JSON): nested objects become columns named ``parent__child`` (recursively, so
``production.company.name`` is ``production__company__name``); arrays of scalars stay list columns; arrays of
objects become one list column per field, ``cast: [{name, character}]`` -> ``cast__name``, ``cast__character``
(struct of arrays, element order kept). Columns outside the known schema of a kind are never dropped: they go,
flattened, into the ``extra`` JSON column (``{"flattened_name": value}``, nulls left out; null when none).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cinematch.core.errors import BadInput
from cinematch.datasets.delimited import FAULT, INTERNAL, RECORD, content_error, read_delimited, read_lines
from cinematch.datasets.formats import check_file
from cinematch.datasets.raw_tables import duck, with_row_numbers
from cinematch.datasets.values import integer_text, timestamp_text

VIEWING_KINDS = ("users", "sessions", "content")
SEP = "__"

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


def flatten(table: pa.Table) -> pa.Table:
    """Flatten nested columns: objects to ``parent__child``, arrays of objects to one list per field."""
    out: dict[str, pa.Array] = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        _flatten_into(out, name, col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
    return pa.table(out) if out else table


def _flatten_into(out: dict[str, pa.Array], name: str, arr: pa.Array) -> None:
    t = arr.type
    if pa.types.is_struct(t):
        # StructArray.flatten() folds the parent's nulls into each child
        for field, child in zip(t, arr.flatten(), strict=True):
            _flatten_into(out, f"{name}{SEP}{field.name}", child)
    elif pa.types.is_list(t) and pa.types.is_struct(t.value_type):
        values = arr.values
        for field, child in zip(t.value_type, values.flatten(), strict=True):
            relisted = pa.ListArray.from_arrays(arr.offsets, child, mask=arr.is_null())
            _flatten_into(out, f"{name}{SEP}{field.name}", relisted)
    else:
        out[name] = arr


def _read_json(path: Path, shown: Path | None = None, fmt: str = "auto") -> pa.Table:
    """The records of a JSON file (``fmt``: DuckDB's ``auto``, ``array``...); errors name ``shown`` (or ``path``)."""
    con = duck()
    try:
        src = f"read_json(?, format='{fmt}', records=true, sample_size=-1)"
        described = con.execute(f"describe select * from {src}", [str(path)]).fetchall()
        # a key whose values mix types is typed JSON: its scalars are taken as plain text ('"x"' -> 'x')
        cols = ", ".join(f"({_q(n)} ->> '$') as {_q(n)}" if t == "JSON" else _q(n) for n, t, *_ in described)
        return con.sql(f"select {cols} from {src}", params=[str(path)]).to_arrow_table()
    except duckdb.Error as exc:
        message = f"cannot parse {shown or path} as content JSON{{}}; give an array of objects or JSON lines"
        raise content_error(message.format(f" ({' '.join(str(exc).split())[:160]})"), message.format("")) from None
    finally:
        con.close()


def _line_faults(text: pa.Array) -> pa.Array:
    """For each line: why it is not one JSON object ("not valid JSON", "not a JSON object"), or null."""
    con = duck()
    try:
        con.register("_lines", pa.table({"i": pa.array(np.arange(len(text), dtype=np.int64)), "t": text}))
        sql = """select case when not json_valid(t) then 'not valid JSON'
                            when json_type(t) <> 'OBJECT' then 'not a JSON object' end as fault
                 from _lines order by i"""
        return con.sql(sql).to_arrow_table().column("fault").combine_chunks()
    finally:
        con.close()


def _good_lines(path: Path, text: pa.Array) -> pa.Table:
    """Read the given JSON lines (all objects) exactly as a file holding only them."""
    joined = pc.binary_join(
        pa.LargeListArray.from_arrays(pa.array([0, len(text)]), text), pa.scalar("\n", pa.large_string())
    )
    with tempfile.TemporaryDirectory(prefix="cinematch-content-") as tmp:
        lines = Path(tmp) / "good.jsonl"
        lines.write_bytes(joined[0].as_buffer().to_pybytes())
        return _read_json(lines, shown=path, fmt="newline_delimited")


def _shape(table: pa.Table, row_numbers: np.ndarray | None) -> pa.Table:
    """Flattened columns, JSON keys named like the reader's own columns kept apart, then ``row_number``."""
    table = flatten(table)
    table = table.rename_columns([f"{c}_" if c in INTERNAL else c for c in table.column_names])
    if row_numbers is None or len(row_numbers) != table.num_rows:
        return with_row_numbers(table)
    return table.append_column("row_number", pa.array(row_numbers.astype(np.int64)))


def _read_content(path: Path) -> pa.Table:
    """A content JSON array (one bad element refuses the file) or JSON lines (a bad line is quarantined).

    A JSON-lines row is numbered by its physical line; a line that is not one JSON object becomes a row with a
    ``_fault`` and its raw text in ``_record``. A file with no JSON object on any line is refused whole.
    """
    lines = read_lines(path, quoted=False)  # LF or CR LF, a BOM dropped, UTF-8 checked
    kept = np.flatnonzero(~lines.blank)
    if not len(kept):
        raise BadInput(f"file is empty: {path}; it holds only blank lines, nothing to load")
    text = lines.text.take(pa.array(kept))
    with path.open("rb") as fh:  # the first character decides, not a Python copy of a long first line
        starts_array = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"["
    if starts_array:
        try:  # format 'array' given: DuckDB's own detection misses an array after a UTF-8 BOM
            return _shape(_read_json(path, fmt="array"), None)
        except BadInput:
            if len(kept) == 1 or _line_faults(text.slice(0, 1))[0].as_py() == "not valid JSON":
                raise  # a (pretty-printed or single-line) array: the whole file is wrong
    faults = _line_faults(text)
    numbers = kept + 1
    if faults.null_count == len(faults):
        return _shape(_read_json(path), numbers)
    try:  # objects spread over several lines each (pretty-printed): a stream DuckDB reads whole
        return _shape(_read_json(path), None)
    except BadInput:
        if faults.null_count == 0:
            raise
    ok = faults.is_null().to_numpy(zero_copy_only=False)
    good = _shape(_good_lines(path, text.filter(pa.array(ok))), numbers[ok])
    n_bad = int((~ok).sum())
    bad = {c: pa.nulls(n_bad, good.schema.field(c).type) for c in good.column_names}
    bad["row_number"] = pa.array(numbers[~ok].astype(np.int64))
    good = good.append_column(FAULT, pa.nulls(good.num_rows, pa.string()))
    good = good.append_column(RECORD, pa.nulls(good.num_rows, pa.string()))
    bad[FAULT] = faults.filter(pa.array(~ok)).cast(pa.string())
    bad[RECORD] = text.filter(pa.array(~ok)).cast(pa.string())
    return pa.concat_tables([good, pa.table(bad)]).sort_by("row_number")


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
        return _canonical(_read_content(path), kind, path), _FORMATS[kind]
    return _canonical(read_delimited(path, ",", header=True, quoted=True), kind, path), _FORMATS[kind]


# --------------------------------------------------------------------------------------------- validation


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _text(raw: pa.Table, col: str) -> str:
    """The column as trimmed text ('' becomes null), or null when the file lacks it."""
    if col not in raw.column_names:
        return "cast(null as varchar)"
    return f"nullif(trim(cast({_q(col)} as varchar)), '')"


def _list(raw: pa.Table, col: str) -> str:
    if col not in raw.column_names:
        return "cast(null as varchar[])"
    if pa.types.is_list(raw.schema.field(col).type):
        return f"cast({_q(col)} as varchar[])"
    return (f"list_filter(list_transform(string_split({_text(raw, col)}, '|'), lambda g: trim(g)), "
            "lambda g: g <> '')")  # fmt: skip


def _extra(raw: pa.Table, kind: str) -> str:
    unknown = [c for c in raw.column_names if c not in COLUMNS[kind] and c not in INTERNAL]
    if not unknown:
        return "cast(null as varchar)"
    entries = ", ".join("{'k': '" + c.replace("'", "''") + "', 'v': to_json(" + _q(c) + ")}" for c in unknown)
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
    t = lambda c: _text(raw, c)  # noqa: E731
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


# --------------------------------------------------------------------------------------------- generation

_DEVICES = np.array(["tv", "mobile", "web", "tablet"])
_PLANS = np.array(["free", "basic", "standard", "premium"])
_STUDIOS = np.array(["Northlight", "Bluefield", "Harbor Pictures", "Iron Gate", "Meridian", "Red Lantern"])
_NAMES = np.array(["Ava Stone", "Leo Marsh", "Mia Cole", "Noah Park", "Iris Vale", "Owen Reyes", "Zoe Hart",
                   "Eli Brooks", "Nora Quinn", "Finn Wade", "Lena Ross", "Theo Lane"])  # fmt: skip


def write_viewing(tables: dict[str, pa.Table], out_dir: Path, seed: int) -> dict[str, dict]:
    """Write users.csv, sessions.csv and content.json consistent with the generated ratings (seeded).

    A seeded 30% of the base ratings (at most 2M) come with a viewing session that started 0-3 hours before the
    rating, lasting a Beta(5, 2) share of the runtime, up to 10% beyond it (credits, rewinds).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 9]))
    out_dir = Path(out_dir)
    users, movies, ratings = tables["users"], tables["movies"], tables["ratings"]
    con = duckdb.connect()
    con.execute("set TimeZone='UTC'")
    files: dict[str, dict] = {}
    try:
        n_users, n_movies = users.num_rows, movies.num_rows
        con.register("u", users.append_column("subscription", pa.array(_PLANS[rng.integers(0, 4, n_users)])))
        runtime = rng.integers(80, 181, n_movies)
        month, day = rng.integers(1, 13, n_movies), rng.integers(1, 29, n_movies)
        n_cast = rng.integers(1, 4, n_movies)
        cast_names = _NAMES[rng.integers(0, _NAMES.size, n_cast.sum())]
        offsets = np.concatenate([[0], np.cumsum(n_cast)]).astype(np.int32)
        cast = pa.ListArray.from_arrays(pa.array(offsets), pa.StructArray.from_arrays(
            [pa.array(cast_names), pa.array(np.char.add("Role ", (np.arange(cast_names.size) % 7 + 1).astype(str)))],
            names=["name", "character"]))  # fmt: skip
        con.register("m", movies.append_column("runtime_minutes", pa.array(runtime))
                     .append_column("month", pa.array(month)).append_column("day", pa.array(day))
                     .append_column("studio", pa.array(_STUDIOS[rng.integers(0, _STUDIOS.size, n_movies)]))
                     .append_column("budget", pa.array(rng.integers(1, 200, n_movies) * 1_000_000.0))
                     .append_column("cast", cast))  # fmt: skip
        n = ratings.num_rows
        take = np.sort(rng.choice(n, size=min(int(n * 0.3), 2_000_000), replace=False))
        picked = ratings.take(pa.array(take))
        lead = rng.integers(0, 3 * 3600, take.size)
        share = np.minimum(rng.beta(5.0, 2.0, take.size) * 1.1, 1.1)
        con.register("r", picked.append_column("lead_s", pa.array(lead)).append_column("share", pa.array(share))
                     .append_column("device", pa.array(_DEVICES[rng.integers(0, 4, take.size)])))  # fmt: skip
        path = out_dir / "users.csv"
        con.execute(f"""copy (select user_id, cast(signup_at as date) as signup_date, country, age_band as age_group,
                        subscription from u order by user_id) to '{path}' (header, delimiter ',')""")
        files["users_csv"] = {"path": str(path), "rows": n_users}
        path = out_dir / "sessions.csv"
        con.execute(f"""copy (
            select 's' || lpad(cast(row_number() over (order by r.rated_at, r.user_id, r.movie_id) as varchar), 9, '0')
                       as session_id, r.user_id, r.movie_id,
                   strftime(r.rated_at - to_seconds(r.lead_s), '%Y-%m-%dT%H:%M:%SZ') as started_at,
                   cast(round(m.runtime_minutes * 60 * r.share) as bigint) as watch_seconds, r.device
            from r join m on r.movie_id = m.movieId order by session_id) to '{path}' (header, delimiter ',')""")
        files["sessions"] = {"path": str(path), "rows": int(take.size)}
        path = out_dir / "content.json"
        con.execute(f"""copy (
            select movieId as movie_id, regexp_replace(title, '\\s*\\(\\d{{4}}\\)\\s*$', '') as title, runtime_minutes,
                   make_date(coalesce(try_cast(regexp_extract(title, '\\((\\d{{4}})\\)\\s*$', 1) as integer), 2000),
                             month, day) as release_date,
                   list_filter(string_split(genres, '|'), lambda g: g <> '(no genres listed)') as genres,
                   {{'studio': studio, 'country': 'US', 'budget_usd': budget}} as production,
                   "cast", {{'regions': ['US', 'GB'], 'hdr': movieId % 3 = 0}} as availability
            from m order by movieId) to '{path}' (format json, array true)""")
        files["content"] = {"path": str(path), "rows": n_movies}
    finally:
        con.close()
    return files


def content_records(path: Path) -> list[dict]:
    """The records of a content JSON file (array or JSON lines), for tests and tools."""
    text = Path(path).read_text(encoding="utf-8").strip()
    return json.loads(text) if text.startswith("[") else [json.loads(ln) for ln in text.splitlines() if ln.strip()]


__all__ = [
    "COLUMNS",
    "INSERTS",
    "VIEWING_KINDS",
    "flatten",
    "normalize_viewing",
    "read_viewing_raw",
    "viewing_kind",
    "write_viewing",
]  # fmt: skip
