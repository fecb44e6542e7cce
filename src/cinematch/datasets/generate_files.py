"""The files of a generated dataset: Parquet ratings and batches, movies.csv, users/sessions CSV, content.json."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cinematch.datasets.generate_config import iso


def write_movies_csv(table: pa.Table, path: Path) -> None:
    """MovieLens movies.csv: bare header, titles quoted only when they contain a comma or quote."""
    table.to_pandas().to_csv(path, index=False, lineterminator="\n")


def write_tables(
    tables: dict[str, pa.Table], out_dir: Path, progress: Callable[[str], None] | None = None
) -> dict[str, dict[str, Any]]:
    """Write ``movies`` as movies.csv and every other table as ``<name>.parquet`` (zstd); describe each file.

    Each file is written under a temporary name and renamed, so a reader never sees a half-written file.
    """
    say = progress or (lambda _msg: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    for name, table in tables.items():
        path = out_dir / (f"{name}.csv" if name == "movies" else f"{name}.parquet")
        tmp = path.with_name(f".{path.name}.tmp")
        say(f"write {path.name}")
        if name == "movies":
            write_movies_csv(table, tmp)
        else:
            pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
        info: dict[str, Any] = {"path": str(path), "rows": table.num_rows}
        if "rated_at" in table.column_names and table.num_rows:
            col = table.column("rated_at").to_numpy().view(np.int64)
            info["min_rated_at"], info["max_rated_at"] = iso(int(col.min())), iso(int(col.max()))
        files[name] = info
    return files


_DEVICES = np.array(["tv", "mobile", "web", "tablet"])
_PLANS = np.array(["free", "basic", "standard", "premium"])
_STUDIOS = np.array(["Northlight", "Bluefield", "Harbor Pictures", "Iron Gate", "Meridian", "Red Lantern"])
_NAMES = np.array(["Ava Stone", "Leo Marsh", "Mia Cole", "Noah Park", "Iris Vale", "Owen Reyes", "Zoe Hart",
                   "Eli Brooks", "Nora Quinn", "Finn Wade", "Lena Ross", "Theo Lane"])  # fmt: skip


def write_viewing(tables: dict[str, pa.Table], out_dir: Path, seed: int) -> dict[str, dict[str, Any]]:
    """Write users.csv, sessions.csv and content.json consistent with the generated ratings (seeded).

    A seeded 30% of the base ratings (at most 2M) come with a viewing session that started 0-3 hours before the
    rating, lasting a Beta(5, 2) share of the runtime, up to 10% beyond it (credits, rewinds).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 9]))
    out_dir = Path(out_dir)
    users, movies, ratings = tables["users"], tables["movies"], tables["ratings"]
    con = duckdb.connect()
    con.execute("set TimeZone='UTC'")
    files: dict[str, dict[str, Any]] = {}
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
