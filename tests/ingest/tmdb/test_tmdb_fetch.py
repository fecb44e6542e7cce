"""`cinematch tmdb fetch`: bronze rows and Parquet, resumability (also after SIGKILL), quarantine, no key leaks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import quote, quote_plus

import duckdb
import pyarrow.parquet as pq
import pytest
from tests.ingest.tmdb.fake_tmdb import KEY, MOVIES, SCRIPT, FakeTmdb, max_in_window, movie

from cinematch.ingest.bronze import ingest_file
from cinematch.ingest.tmdb import fetch_tmdb, read_links
from cinematch.storage.warehouse import write_session


def test_read_links_skips_rows_without_tmdb_id(inputs) -> None:
    pairs, missing = read_links(inputs[1])
    assert missing == 1
    assert sorted(zip(pairs["movie_id"], pairs["tmdb_id"], strict=True)) == [
        (1, 862), (2, 8844), (3, 15602), (4, 31357), (5, 11862)]  # fmt: skip


def test_fetch_lands_raw_rows_resumes_and_quarantines(tmdb_settings, inputs) -> None:
    movies_csv = inputs[0]
    with FakeTmdb(MOVIES, SCRIPT) as fake:
        settings = tmdb_settings(fake)
        with write_session(settings) as con:
            ingest_file(con, movies_csv, kind="movies")
            first = fetch_tmdb(con, settings)  # links.csv found beside the ingested movies file
            rows = con.execute("select tmdb_id, movie_id, status, http_status, reason, payload is null, endpoint "
                               "from bronze.tmdb_raw order by tmdb_id").fetchall()  # fmt: skip
            second = fetch_tmdb(con, settings)
    assert {k: first[k] for k in ("fetched", "skipped", "no_tmdb_id", "not_found", "malformed", "failed")} == {
        "fetched": 3, "skipped": 0, "no_tmdb_id": 1, "not_found": 1, "malformed": 1, "failed": 0}  # fmt: skip
    assert first["requests"] == 5 and first["max_requests_in_1s"] <= 50
    assert [r[:4] for r in rows] == [(862, 1, "ok", 200), (8844, 2, "ok", 200), (11862, 5, "ok", 200),
                                     (15602, 3, "not_found", 404), (31357, 4, "malformed", 200)]  # fmt: skip
    assert rows[4][4].startswith("invalid JSON") and rows[4][5] is False  # the bad body is kept for inspection
    assert rows[0][6] == "/movie/862?append_to_response=credits,reviews"
    # the rerun fetches only the quarantined id again; ok and 404 ids are done
    assert (second["fetched"], second["skipped"], second["malformed"], second["requests"]) == (0, 4, 1, 1)
    assert fake.counts() == {862: 1, 8844: 1, 11862: 1, 15602: 1, 31357: 2}
    day = time.strftime("%Y-%m-%d", time.gmtime())
    parts = sorted((settings.lake_dir / "bronze" / "tmdb_raw" / f"extracted_date={day}").glob("*.parquet"))
    lake = pq.ParquetDataset(parts).read()
    assert lake.num_rows == 6 and sorted(lake["tmdb_id"].to_pylist()) == [862, 8844, 11862, 15602, 31357, 31357]
    assert not list(settings.lake_dir.rglob("*.tmp"))


def test_limit_and_missing_links(tmdb_settings, inputs, cli) -> None:
    with FakeTmdb(MOVIES, SCRIPT) as fake:
        env = {"CINEMATCH_TMDB_API_KEY": KEY, "CINEMATCH_TMDB_BASE_URL": fake.url, "CINEMATCH_TMDB_RATE_LIMIT": "50"}
        res = cli("tmdb", "fetch", "--json", env=env)
        assert res.code == 2 and "pass --movies-from-links FILE" in res.stderr
        res = cli("tmdb", "fetch", "--movies-from-links", inputs[1], "--limit", "2", "--json", env=env)
        assert res.code == 0, res.stderr
        assert (res.json["requested"], res.json["fetched"]) == (2, 2)
        unset = cli("tmdb", "fetch", "--movies-from-links", inputs[1], env={"CINEMATCH_TMDB_API_KEY": ""})
        assert unset.code == 2 and unset.stderr.strip() == (
            "error: CINEMATCH_TMDB_API_KEY is not set: export your TMDB v3 API key (or v4 token) and rerun"
        )


def test_key_never_appears_in_logs_output_or_tables(inputs, cli, home) -> None:
    with FakeTmdb(MOVIES, {**SCRIPT, 862: ["429:0", "500"], 8844: ["slow:1"]}) as fake:
        env = {"CINEMATCH_TMDB_API_KEY": KEY, "CINEMATCH_TMDB_BASE_URL": fake.url, "CINEMATCH_TMDB_RATE_LIMIT": "50",
               "CINEMATCH_TMDB_TIMEOUT_SECONDS": "0.3", "CINEMATCH_TMDB_BACKOFF_SECONDS": "0.01",
               "CINEMATCH_LOG_LEVEL": "DEBUG"}  # fmt: skip
        res = cli("tmdb", "fetch", "--movies-from-links", inputs[1], "--json", "--debug", env=env)
    assert res.code == 0, res.stderr
    assert "tmdb_retry" in res.stderr
    assert KEY not in res.stdout and KEY not in res.stderr
    assert res.json["retries"] >= 3 and res.json["fetched"] == 3
    con = duckdb.connect(str(home.duckdb_path), read_only=True)
    dump = json.dumps(con.execute("select * from bronze.tmdb_raw").fetchall(), default=str)
    dump += json.dumps(con.execute("select * from ops.pipeline_runs").fetchall(), default=str)
    con.close()
    assert KEY not in dump
    for part in home.lake_dir.rglob("*.parquet"):
        assert KEY.encode() not in part.read_bytes()


def test_killed_run_resumes_without_refetching(inputs, home) -> None:
    many = {i: movie(i, f"Movie {i}") for i in range(1000, 1040)}
    links = inputs[1].parent / "many_links.csv"
    links.write_text("movieId,imdbId,tmdbId\n" + "".join(f"{i - 999},,{i}\n" for i in many))
    with FakeTmdb(many) as fake:
        env = {**os.environ, "CINEMATCH_HOME": str(home.home), "CINEMATCH_TMDB_API_KEY": KEY,
               "CINEMATCH_TMDB_BASE_URL": fake.url, "CINEMATCH_TMDB_RATE_LIMIT": "10",
               "CINEMATCH_TMDB_COMMIT_EVERY": "2"}  # fmt: skip
        cmd = [sys.executable, "-m", "cinematch", "tmdb", "fetch", "--movies-from-links", str(links), "--json"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while len(fake.times()) < 15 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = fake.counts()
        first_run = len(fake.times())
        con = duckdb.connect(str(home.duckdb_path))  # replays the WAL like the next command would
        committed = {i for (i,) in con.execute("select tmdb_id from bronze.tmdb_raw where status = 'ok'").fetchall()}
        con.close()
        assert 0 < len(committed) < len(many)
        assert len(set(before) - committed) <= 2 * 4 + 2  # lost: in flight plus one uncommitted batch at most
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout and json.loads(done.stdout)["skipped"] == len(committed)
    after = fake.counts()
    assert all(after[i] == 1 for i in committed)  # committed ids were never fetched again
    assert set(after) == set(many) and max(after.values()) <= 2
    # the limit holds within a run (a killed run's last requests may share a second with the rerun's first): by the
    # client's own send times, and by the server's clock with 0.25 s allowed for requests that the loaded machine
    # delivers in a bunch (without a limit, all 40 would land within a fraction of a second)
    assert json.loads(done.stdout)["max_requests_in_1s"] <= 10
    assert max_in_window(fake.times()[first_run:], window=0.75) <= 10
    con = duckdb.connect(str(home.duckdb_path), read_only=True)
    ok = con.execute("select count(*), count(distinct tmdb_id) from bronze.tmdb_raw where status = 'ok'").fetchall()
    con.close()
    assert ok == [(len(many), len(many))]


def _lake_payloads(home) -> list[str]:
    parts = sorted((home.lake_dir / "bronze" / "tmdb_raw").rglob("*.parquet"))
    return [p for p in pq.ParquetDataset(parts).read()["payload"].to_pylist() if p is not None]


# a v3 key as TMDB issues them, and one whose characters the query string percent-encodes (+, /, =, space, &, é)
ODD_KEY = "Zx9+Qw/Er=Ty Ui&Op%Kl\u00e9Mn4"


@pytest.mark.parametrize("key", [KEY, ODD_KEY], ids=["hex key", "percent-encoded key"])
def test_key_echoed_by_the_upstream_is_scrubbed_before_storing(inputs, cli, home, key: str) -> None:
    """Issue 16, point 8: bodies that echo the request URL (``?api_key=...``) are stored without the key, in
    whatever spelling the echo has it (the URL carries it percent-encoded)."""
    spellings = {key, quote(key, safe=""), quote_plus(key), quote(key, safe="").lower()}
    with FakeTmdb(MOVIES, {**SCRIPT, 8844: ["badshape"]}, key=key, echo_url=True) as fake:
        env = {"CINEMATCH_TMDB_API_KEY": key, "CINEMATCH_TMDB_BASE_URL": fake.url, "CINEMATCH_TMDB_RATE_LIMIT": "50"}
        res = cli("tmdb", "fetch", "--movies-from-links", inputs[1], "--json", env=env)
    assert res.code == 0, res.stderr
    assert (res.json["fetched"], res.json["malformed"], res.json["not_found"]) == (2, 2, 1)
    con = duckdb.connect(str(home.duckdb_path), read_only=True)
    stored = [p for (p,) in con.execute("select payload from bronze.tmdb_raw where payload is not null").fetchall()]
    con.close()
    lake = _lake_payloads(home)
    assert len(stored) == len(lake) == 4
    for payload in stored + lake:
        assert "api_key=***" in payload  # the echo is kept, the key is not
        assert not [s for s in spellings if s in payload], payload
    ok = [json.loads(p) for p in stored if "Broken" not in p and "overview" not in p]
    assert sorted(d["title"] for d in ok) == ["Father of the Bride Part II", "Toy Story"]  # still valid JSON
    for path in [home.duckdb_path, *home.lake_dir.rglob("*.parquet")]:
        assert not [s for s in spellings if s.encode() in path.read_bytes()], path


@pytest.mark.parametrize("upstream", ["http 500", "unreachable"])
def test_fetch_exits_1_when_every_request_failed(inputs, cli, home, upstream: str) -> None:
    """Issue 16, point 12: a run where no request got an answer is a failure (exit 1, one line with the cause)."""
    ids = (862, 8844, 15602, 31357, 11862)
    with FakeTmdb(MOVIES, {i: ["500"] * 10 for i in ids}) as fake:
        base = fake.url if upstream == "http 500" else f"http://127.0.0.1:{_closed_port()}/3"
        env = {"CINEMATCH_TMDB_API_KEY": KEY, "CINEMATCH_TMDB_BASE_URL": base, "CINEMATCH_TMDB_RATE_LIMIT": "50",
               "CINEMATCH_TMDB_MAX_ATTEMPTS": "2", "CINEMATCH_TMDB_BACKOFF_SECONDS": "0.01"}  # fmt: skip
        res = cli("tmdb", "fetch", "--movies-from-links", inputs[1], "--json", env=env)
    cause = "HTTP 500 after 2 attempts" if upstream == "http 500" else "transport error (ConnectError) after 2 attempts"
    assert res.code == 1, (res.code, res.stdout, res.stderr)
    assert res.stderr.strip().splitlines() == [
        f"error: tmdb fetch: all 5 requests failed ({cause}); check CINEMATCH_TMDB_BASE_URL and the network, "
        "then rerun (failed ids are retried)"
    ]
    con = duckdb.connect(str(home.duckdb_path), read_only=True)
    assert con.execute("select count(*) from bronze.tmdb_raw where status = 'failed'").fetchall() == [(5,)]
    assert con.execute("select status from ops.pipeline_runs where pipeline = 'tmdb'").fetchall() == [("failed",)]
    con.close()


def test_fetch_with_some_failures_still_succeeds(inputs, cli) -> None:
    """Point 12's other side: one id that keeps failing among answered ones is a partial run (exit 0)."""
    with FakeTmdb(MOVIES, {**SCRIPT, 862: ["500"] * 10}) as fake:
        env = {"CINEMATCH_TMDB_API_KEY": KEY, "CINEMATCH_TMDB_BASE_URL": fake.url, "CINEMATCH_TMDB_RATE_LIMIT": "50",
               "CINEMATCH_TMDB_MAX_ATTEMPTS": "2", "CINEMATCH_TMDB_BACKOFF_SECONDS": "0.01"}  # fmt: skip
        res = cli("tmdb", "fetch", "--movies-from-links", inputs[1], "--json", env=env)
    assert res.code == 0, res.stderr
    assert (res.json["failed"], res.json["fetched"]) == (1, 2)
    assert res.json["failure_reasons"] == {"HTTP 500 after 2 attempts": 1}


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
