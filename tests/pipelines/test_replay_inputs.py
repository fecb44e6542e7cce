"""`cinematch replay` on other inputs and other kill points than tests/pipelines/test_replay.py: a --start with a
time and an offset (UTC bounds, a rating on a bound goes to the later period, a naive start is UTC), Netflix Prize
and streaming-CSV histories (every valid row in the base or one period, every period scored), and SIGKILL during the
base build, during the copy of the policy home and during the scoring of a period, each then run again to the same
per-period metrics as an uninterrupted run in another home."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cinematch.datasets.generate import generate_dataset
from cinematch.datasets.generate_config import GenerateConfig

pytestmark = pytest.mark.slow  # every test replays a history: a base trained with tuning, then its periods

# A POSIX zone 9 hours east of UTC (no tz database needed): a start or timestamp read as local time shows.
NOT_UTC = {"TZ": "JST-9"}
METRICS = ("n_ratings", "n_users", "hit_rate_at_10", "ndcg_at_10", "coverage", "fallback_share", "rmse", "n_rmse",
           "n_unknown", "drift_score", "decision", "retrained", "promoted", "period_start", "period_end")  # fmt: skip
US = 1_000_000


def unique_pairs(rng: np.random.Generator, n: int, users: int, movies: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distinct (user, movie) pairs, ids from 1."""
    keys = rng.choice(users * movies, size=n, replace=False)
    return keys // movies + 1, keys % movies + 1


def period_counts(seconds: np.ndarray, start: datetime, step: timedelta, n: int) -> list[int]:
    """Ratings per half-open period [start + i*step, start + (i+1)*step), from epoch seconds (floats allowed)."""
    lo = start.timestamp()
    edges = lo + step.total_seconds() * np.arange(n + 1)
    return [int(((seconds >= a) & (seconds < b)).sum()) for a, b in pairwise(edges)]


def replay_cli(home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> dict[str, Any]:
    """`cinematch replay ... --json` in ``home``; its JSON document (asserting success)."""
    proc = subprocess.run([sys.executable, "-m", "cinematch", "replay", *args, "--json"], capture_output=True,
                          text=True, timeout=timeout, env=child_env(home, env))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def child_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CINEMATCH_DATABASE_URL", "CINEMATCH_ENGINE")}
    return {**env, "CINEMATCH_HOME": str(home), "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **(extra or {})}


def scored(period: dict[str, Any]) -> bool:
    return all(period[k] is not None for k in ("ndcg_at_10", "hit_rate_at_10", "coverage", "rmse")) and (
        0 <= period["ndcg_at_10"] <= period["hit_rate_at_10"] <= 1
    )


# --- 1. --start with a time and an offset --------------------------------------------------------------------


def test_start_with_a_time_and_an_offset_gives_utc_bounds(tmp_path: Path, rng: np.random.Generator) -> None:
    """--start 2020-01-08T12:00:00+02:00 is 10:00 UTC: the bounds are 10:00 UTC each day, a rating exactly on a
    bound is counted in the later period, and the same instant written naive (UTC), with Z or in another offset is
    the same replay. The CLI runs with a local time zone 9 hours east of UTC, so a local reading would show."""
    start = datetime(2020, 1, 8, 10, tzinfo=UTC)
    day = timedelta(days=1)
    n_base, n_later = 5_000, 900
    users, movies = unique_pairs(rng, n_base + n_later + 12, 250, 160)
    lo = int(start.timestamp())
    # whole seconds here; sub-second times are covered by tests/recommender/test_subsecond_times.py
    seconds = np.concatenate([
        lo - rng.integers(1, 40 * 86_400, size=n_base),  # the base: 40 days before the start
        lo + rng.integers(0, 3 * 86_400, size=n_later),  # three daily periods
        # on the bounds themselves, and one second before each (so either side of every bound is exercised)
        np.repeat([lo, lo + 86_400, lo + 2 * 86_400], 3),
        np.array([lo - 1, lo + 86_400 - 1, lo + 2 * 86_400 - 1]),
    ])  # fmt: skip
    ts = seconds * US
    path = tmp_path / "history.parquet"
    pq.write_table(pa.table({"user_id": pa.array(users, pa.int64()), "movie_id": pa.array(movies, pa.int64()),
                             "rating": pa.array(rng.integers(1, 11, size=ts.size) / 2.0),
                             "rated_at": pa.array(ts, pa.timestamp("us"))}), path)  # fmt: skip

    home = tmp_path / "home"
    common = ("--ratings", str(path), "--every", "1d", "--policy", "never")
    doc = replay_cli(home, *common, "--start", "2020-01-08T12:00:00+02:00", env=NOT_UTC)
    assert doc["start"] == "2020-01-08T10:00:00+00:00"
    periods = doc["periods"]
    bounds = [(p["period_start"], p["period_end"]) for p in periods]
    assert bounds == [("2020-01-08T10:00:00", "2020-01-09T10:00:00"), ("2020-01-09T10:00:00", "2020-01-10T10:00:00"),
                      ("2020-01-10T10:00:00", "2020-01-11T10:00:00")]  # fmt: skip
    expected = period_counts(seconds, start, day, 3)
    # the data make the rule visible: periods closed on the right instead would count differently
    on_bound = [int((seconds == lo + k * 86_400).sum()) for k in range(3)]
    assert on_bound == [3, 3, 3]
    assert [p["n_ratings"] for p in periods] == expected
    assert doc["n_base"] == int((seconds < start.timestamp()).sum()) == n_base + 1
    assert doc["n_base"] + sum(expected) == ts.size and doc["n_invalid"] == 0
    assert all(scored(p) for p in periods)

    # the same instant: naive (UTC), with Z, in another offset: the same replay id (continued, nothing redone)
    for same in ("2020-01-08T10:00:00", "2020-01-08T10:00:00Z", "2020-01-08 19:00:00+09:00"):
        again = replay_cli(home, *common, "--start", same, env=NOT_UTC)
        assert again["replay_id"] == doc["replay_id"], same
        assert again["periods"] == periods, same
    assert [p.name for p in (home / "replays").iterdir()] == [doc["replay_id"]]

    bad = subprocess.run([sys.executable, "-m", "cinematch", "replay", *common, "--start", "2020-01-08T25:00"],
                         capture_output=True, text=True, env=child_env(home), timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "is not an ISO date or time" in bad.stderr and "Traceback" not in bad.stderr


# --- 2. histories in other formats ----------------------------------------------------------------------------


def test_a_netflix_prize_history(tmp_path: Path, rng: np.random.Generator) -> None:
    """combined_data: `MovieID:` blocks of `CustomerID,Rating,Date` lines (dates only, so ratings sit at UTC
    midnight: every one on a period's first day is on its bound and goes to that period), a few invalid lines."""
    n, first = 7_000, np.datetime64("2005-01-03")
    users, movies = unique_pairs(rng, n, 300, 180)
    users = users + 1_000_000  # Netflix customer ids are large and sparse
    days = first + rng.integers(0, 77, size=n).astype("timedelta64[D]")
    stars = rng.integers(1, 6, size=n)
    order = np.lexsort((days, movies))
    lines = np.char.add(np.char.add(np.char.add(users[order].astype(str), ","), stars[order].astype(str)),
                        np.char.add(",", days[order].astype(str)))  # fmt: skip
    blocks = np.split(lines, np.flatnonzero(np.diff(movies[order])) + 1)
    ids = movies[order][np.r_[0, np.flatnonzero(np.diff(movies[order])) + 1]]
    invalid = ["1000001,6,2005-02-01", "1000002,0,2005-02-01", "abc,3,2005-02-01", "1000003,4,2005-02-30"]
    text = "".join(f"{m}:\n" + "\n".join(block) + "\n" for m, block in zip(ids, blocks, strict=True))
    path = tmp_path / "combined_data_1.txt"
    path.write_text(text + "999:\n" + "\n".join(invalid) + "\n")

    start = datetime(2005, 3, 7, tzinfo=UTC)  # a Monday, day 63: two whole weeks after it
    events = tmp_path / "lineage.jsonl"  # OpenLineage on: the replay is one run, its steps (scratch) are not
    doc = replay_cli(tmp_path / "home", "--ratings", str(path), "--start", "2005-03-07", "--policy", "never",
                     env={"CINEMATCH_OPENLINEAGE_URL": f"file://{events}"})  # fmt: skip
    lineage = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(e["eventType"], e["job"]["name"]) for e in lineage] == [("START", "cinematch.replay"),
                                                                     ("COMPLETE", "cinematch.replay")]  # fmt: skip
    assert [d["name"] for d in lineage[0]["inputs"]] == [path.resolve().as_posix().lstrip("/")]
    assert [d["name"] for d in lineage[1]["outputs"]] == ["warehouse.ops.replay_periods"]
    seconds = (days - np.datetime64("1970-01-01")).astype("timedelta64[s]").astype(np.int64).astype(float)
    expected = period_counts(seconds, start, timedelta(days=7), 2)
    assert int((seconds == start.timestamp()).sum()) > 0  # ratings on the first bound, in period 1
    assert doc["n_invalid"] == len(invalid)
    assert [p["n_ratings"] for p in doc["periods"]] == expected
    assert doc["n_base"] + sum(p["n_ratings"] for p in doc["periods"]) == n
    assert all(scored(p) for p in doc["periods"]) and not any(p["retrained"] for p in doc["periods"])
    # the movies come from the ratings (no movies file): coverage is over the movies rated so far
    assert all(p["coverage"] <= 1 for p in doc["periods"])


def test_a_streaming_csv_history_with_offsets(tmp_path: Path) -> None:
    """The streaming drop format `DATE,CUST_ID,MOVIE_ID,RATING`, its times written in mixed UTC offsets (so only
    a UTC reading puts them in the right period), a few invalid rows; every:2 retrains once."""
    gen = tmp_path / "gen"
    generate_dataset(gen, GenerateConfig(users=300, movies=200, ratings=6_000, weeks=3, batch_ratings=500,
                                         drift_week=2, seed=11))  # fmt: skip
    files = ["ratings.parquet"] + [f"batch_w{w}.parquet" for w in (1, 2, 3)]
    table = pa.concat_tables([pq.read_table(gen / f, columns=["user_id", "movie_id", "rating", "rated_at"])
                              for f in files])  # fmt: skip
    ts = table["rated_at"].cast(pa.int64()).to_numpy()  # naive UTC microseconds
    seconds = ts // US
    rng = np.random.default_rng(5)
    offsets = rng.choice(np.array([0, 2 * 3600, -5 * 3600, 9 * 3600 + 1800]), size=ts.size)
    local = (seconds + offsets).astype("datetime64[s]").astype(str)
    sign = np.where(offsets < 0, "-", "+")
    hh, mm = np.abs(offsets) // 3600, np.abs(offsets) % 3600 // 60
    suffix = np.char.add(np.char.add(sign, np.char.zfill(hh.astype(str), 2)),
                         np.char.add(":", np.char.zfill(mm.astype(str), 2)))  # fmt: skip
    when = np.char.add(local, suffix)
    rows = np.char.add(np.char.add(np.char.add(when, ","), table["user_id"].to_numpy().astype(str)),
                       np.char.add(np.char.add(",", table["movie_id"].to_numpy().astype(str)),
                                   np.char.add(",", np.char.mod("%g", table["rating"].to_numpy()))))  # fmt: skip
    invalid = ["2024-04-02T10:00:00+00:00,7,8,7", "2024-04-02T10:00:00+00:00,x,8,3", "not a date,7,9,3",
               "2024-04-02T10:00:00+00:00,7,10,"]  # fmt: skip
    path = tmp_path / "stream.csv"
    path.write_text("DATE,CUST_ID,MOVIE_ID,RATING\n" + "\n".join([*rows.tolist(), *invalid]) + "\n")

    # the UTC midnight of the first week's first rating: weeks 1-3 are the three periods
    w1 = pq.read_table(gen / "batch_w1.parquet")["rated_at"].cast(pa.int64()).to_numpy() // US
    start = datetime.fromtimestamp(int(w1.min()) // 86_400 * 86_400, tz=UTC)
    doc = replay_cli(tmp_path / "home", "--ratings", str(path), "--start", f"{start:%Y-%m-%d}", "--policy",
                     "every:2", env=NOT_UTC)  # fmt: skip
    periods = doc["periods"]
    expected = period_counts(seconds, start, timedelta(days=7), len(periods))
    assert len(periods) == 3 and [p["n_ratings"] for p in periods] == expected
    assert doc["n_invalid"] == len(invalid) and doc["n_base"] + sum(expected) == table.num_rows
    assert all(scored(p) for p in periods)
    assert [p["retrained"] for p in periods] == [False, True, False]


# --- 3. SIGKILL at other points -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kill_history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    out = tmp_path_factory.mktemp("kill-data")
    summary = generate_dataset(out / "gen", GenerateConfig(users=300, movies=200, ratings=8_000, weeks=3,
                                                           batch_ratings=600, drift_week=2, seed=3))  # fmt: skip
    files = ["ratings.parquet"] + [f"batch_w{w}.parquet" for w in (1, 2, 3)]
    table = pa.concat_tables([pq.read_table(out / "gen" / f, columns=["user_id", "movie_id", "rating", "rated_at"])
                              for f in files])  # fmt: skip
    pq.write_table(table, out / "history.parquet")
    start = datetime.fromisoformat(summary["files"]["batch_w1"]["min_rated_at"]).date().isoformat()
    return out / "history.parquet", out / "gen" / "movies.csv", start


def kill_args(history: tuple[Path, Path, str]) -> list[str]:
    ratings, movies, start = history
    return ["--ratings", str(ratings), "--movies", str(movies), "--start", start, "--every", "7d", "--policy",
            "every:2"]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(kill_history: tuple[Path, Path, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    doc = replay_cli(tmp_path_factory.mktemp("uninterrupted") / "home", *kill_args(kill_history))
    assert [p["retrained"] for p in doc["periods"]] == [False, True, False]
    return doc


def replay_folder(home: Path) -> Path | None:
    found = list((home / "replays").glob("*/data/manifest.json")) if (home / "replays").exists() else []
    return found[0].parent.parent if found else None


def row_status(policy_home: Path, period: int) -> str | None:
    """The status of a period's row in the policy home's warehouse (None: no row), read after the kill."""
    con = duckdb.connect(str(policy_home / "warehouse.duckdb"), read_only=True)
    try:
        rows = con.execute("select status from ops.replay_periods where period = ?", [period]).fetchall()
    finally:
        con.close()
    return rows[0][0] if rows else None


def open_files(pid: int) -> list[str]:
    """What the process has open now (/proc/<pid>/fd); empty once it is gone."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    out = []
    for name in names:
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{name}"))
        except OSError:
            continue
    return out


def wait_base_started(home: Path, proc: subprocess.Popen[str]) -> bool:
    """Kill as soon as the base home exists: the base build has begun (the movies and base ratings are loading)."""
    while proc.poll() is None:
        folder = replay_folder(home)
        if folder is not None and (folder / "base").exists():
            return True
        time.sleep(0.002)
    return False


def wait_base_champion(home: Path, proc: subprocess.Popen[str]) -> bool:
    """Kill as soon as the base's first model is the champion: trained and registered, views not yet published."""
    while proc.poll() is None:
        folder = replay_folder(home)
        if folder is not None and (folder / "base" / "models" / "CHAMPION").exists():
            return True
        time.sleep(0.005)
    return False


def wait_policy_copy(home: Path, proc: subprocess.Popen[str]) -> bool:
    """Kill as soon as the policy home's copy has started (its temp folder exists). The copy of a small home takes
    milliseconds, so wait for the line printed when the base is done (just before the copy), then spin."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("base:"):
            break
    folder = replay_folder(home)
    assert folder is not None
    tmp, final = folder / ".every-2.tmp", folder / "every-2"
    while proc.poll() is None and not final.exists():
        if tmp.exists():
            return True
    return False


def wait_scoring(home: Path, proc: subprocess.Popen[str]) -> bool:
    """Kill while period 2 is scored: after period 1's line, the first time the process has the published views
    open (only the scoring opens them before the period is ingested)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("every:2 period 1/"):
            break
    while proc.poll() is None:
        if any("/every-2/serving/views_" in f for f in open_files(proc.pid)):
            return True
    return False


def landed_base(folder: Path) -> bool:
    return (folder / "base").exists() and not (folder / "base" / "BASE_DONE").exists()


def landed_copy(folder: Path) -> bool:
    return (folder / ".every-2.tmp").exists() and not (folder / "every-2").exists()


def landed_scoring(folder: Path) -> bool:
    # period 1 done, period 2 not yet scored, nor its batch ingested
    return row_status(folder / "every-2", 1) == "done" and row_status(folder / "every-2", 2) is None


KILLS: dict[str, tuple[Callable[[Path, subprocess.Popen[str]], bool], Callable[[Path], bool]]] = {
    "base-started": (wait_base_started, landed_base),
    "base-champion": (wait_base_champion, landed_base),
    "policy-copy": (wait_policy_copy, landed_copy),
    "scoring": (wait_scoring, landed_scoring),
}


@pytest.mark.parametrize("point", list(KILLS))
def test_a_replay_killed_at_another_point_finishes_identically(
    point: str, kill_history: tuple[Path, Path, str], uninterrupted: dict[str, Any], tmp_path: Path
) -> None:
    wait, landed = KILLS[point]
    home = tmp_path / "home"
    args = [sys.executable, "-m", "cinematch", "replay", *kill_args(kill_history)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=child_env(home))
    reached = False
    try:
        reached = wait(home, proc)
        if reached:
            proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None and not reached:
            proc.kill()
        proc.wait(timeout=600)
    folder = replay_folder(home)
    assert folder is not None
    hit = reached and proc.returncode == -signal.SIGKILL and landed(folder)
    if not hit:  # a timing miss must not fail the test, but it must be seen
        warnings.warn(f"SIGKILL at {point!r} missed its stage (returncode {proc.returncode})", stacklevel=1)
    print(f"kill point {point}: landed={hit}")

    rerun = replay_cli(home, *kill_args(kill_history))
    assert rerun["replay_id"] == uninterrupted["replay_id"]
    assert len(rerun["periods"]) == len(uninterrupted["periods"]) == 3
    for got, ref in zip(rerun["periods"], uninterrupted["periods"], strict=True):
        for key in METRICS:
            same = (
                got[key] == pytest.approx(ref[key], rel=1e-9) if isinstance(ref[key], float) else got[key] == ref[key]
            )
            assert same, (point, got["period"], key, got[key], ref[key])
    assert not (folder / ".every-2.tmp").exists() and (folder / "base" / "BASE_DONE").exists()
    shutil.rmtree(home, ignore_errors=True)  # a few tens of MB per home
