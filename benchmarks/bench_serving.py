"""Benchmark: `cinematch serve` under load on /recommendations/{user_id}, beside a bare FastAPI app (the ceiling).

    .venv/bin/python benchmarks/bench_serving.py [--quick] [--json OUT] [--home HOME] [--duration 10]

Builds a published home (generated data -> ingest -> ETL -> ALS -> publish) unless --home names one, starts the
real server (`cinematch serve --no-access-log`: uvicorn, one worker, log level warning) and a bare FastAPI app
returning a constant, then measures for each:

- closed loop: as many requests as possible from 32 connections for --duration seconds, random user ids
  (wrk with a Lua script when installed, else an asyncio client), reporting requests/s, p50/p99, errors;
- open loop at a fixed 1,000 requests/s (an asyncio client on raw keep-alive connections; latency counted from
  each request's scheduled send time, so a stall is not hidden by coordinated omission), p50/p99/max, errors.

The load generator shares the machine's cores with the server, as it would on a 2-core box.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from _common import SCRATCH, machine, write_json  # noqa: E402

CONNECTIONS = 32
TARGET_RPS, TARGET_P99_MS = 2_000, 25.0

WRK_LUA = """
math.randomseed(%(seed)d)
request = function()
  return wrk.format("GET", "/recommendations/" .. math.random(1, %(max_user)d) .. "?k=10")
end
"""


# --------------------------------------------------------------------------------------------- servers


def bare_server(port: int) -> None:
    """A FastAPI app returning a constant JSON body: what the framework itself can do on this machine."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import Response

    app = FastAPI()
    body = json.dumps({"user_id": 1, "items": []}).encode()

    @app.get("/recommendations/{user_id}")
    async def constant(user_id: int, k: int = 10) -> Response:
        return Response(body, media_type="application/json")

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    print(json.dumps({"url": f"http://127.0.0.1:{sock.getsockname()[1]}"}), flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")).run(sockets=[sock])


def start(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line:
        raise RuntimeError(f"server did not start: {' '.join(cmd)}")
    url = json.loads(line)["url"]
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"{url}/recommendations/1", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} does not answer")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


# --------------------------------------------------------------------------------------------- the home


def build_home(root: Path, quick: bool) -> Path:
    from cinematch.core.settings import Settings
    from cinematch.datasets.generate import generate_dataset
    from cinematch.datasets.generate_config import GenerateConfig
    from cinematch.ingest.bronze import ingest_file
    from cinematch.pipelines.engine import run_etl, train_warehouse
    from cinematch.recommender.training import params_from_settings
    from cinematch.serving.publish import publish
    from cinematch.storage.warehouse import write_session

    users, movies, ratings = (500, 400, 10_000) if quick else (10_000, 4_000, 300_000)
    data = root / "data"
    generate_dataset(data, GenerateConfig(users=users, movies=movies, ratings=ratings, weeks=1, seed=7))
    settings = Settings(home=root / "home")
    with write_session(settings, "bench") as con:
        ingest_file(con, data / "movies.csv", kind="movies")
        ingest_file(con, data / "ratings.parquet", batch_id="base")
        ingest_file(con, data / "batch_w1.parquet")
        run_etl(con, settings, write_lake=False)
        train_warehouse(con, settings, params_from_settings(settings, rank=16, iterations=5))
        publish(con, settings)
    return settings.home_dir


def max_user(home: Path) -> tuple[int, int]:
    import duckdb

    from cinematch.core.settings import Settings
    from cinematch.serving.layout import current_views

    path = current_views(Settings(home=home))
    if path is None:
        raise SystemExit(f"{home} has no published views: run `cinematch publish` there first")
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("select max(user_id), count(distinct user_id) from recommendations").fetchall()[0]
    finally:
        con.close()


# --------------------------------------------------------------------------------------------- load


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def closed_loop_wrk(url: str, top_user: int, duration: float, tmp: Path) -> dict[str, Any]:
    script = tmp / "random_users.lua"
    script.write_text(WRK_LUA % {"seed": 7, "max_user": top_user})
    cmd = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{int(duration)}s", "--latency", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    dist = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"client": "wrk", "command": " ".join(cmd).replace(str(script), "random_users.lua"),
            "requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
            "p50_ms": _ms(dist["50"]), "p99_ms": _ms(dist["99"]),
            "errors": (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)}  # fmt: skip


class Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: a few microseconds of client work per request,
    so the load generator takes little of the CPU the server needs (an httpx client takes ~10x more)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, url: str) -> Connection:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer, host)

    async def get(self, path: str) -> int:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = re.search(rb"(?i)content-length:\s*(\d+)", head)
        await self.reader.readexactly(int(length.group(1)) if length else 0)
        return status

    def close(self) -> None:
        self.writer.close()


def _percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)  # noqa: E731
    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": pick(1.0)} if ordered else {}


def _path(rng: random.Random, top_user: int) -> str:
    return f"/recommendations/{rng.randint(1, top_user)}?k=10"


async def _closed_loop(url: str, top_user: int, duration: float) -> dict[str, Any]:
    rng = random.Random(7)
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal errors
        conn = await Connection.open(url)
        try:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    status = await conn.get(_path(rng, top_user))
                except (OSError, asyncio.IncompleteReadError):
                    status = 0
                    conn = await Connection.open(url)
                errors += status != 200
                latencies.append(time.perf_counter() - t0)
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    elapsed = time.perf_counter() - t0
    return {"client": "asyncio streams", "requests_per_second": len(latencies) / elapsed, "requests": len(latencies),
            **_percentiles(latencies), "errors": errors}  # fmt: skip


async def _open_loop(url: str, top_user: int, rate: float, duration: float) -> dict[str, Any]:
    """Send at a fixed rate whatever the server does; latency counts from each request's scheduled send time.

    A request finding no idle connection opens a new one (counted in its latency), as independent users would.
    """
    rng = random.Random(11)
    n = int(rate * duration)
    idle = [await Connection.open(url) for _ in range(CONNECTIONS)]
    opened = len(idle)
    latencies: list[float] = []
    errors = 0
    kinds: dict[str, int] = {}

    async def one(scheduled: float, path: str) -> None:
        nonlocal errors, opened
        # (`errors += await ...` would read `errors` before the await and lose other tasks' counts)
        status = 0
        for attempt in range(2):
            try:
                if idle and attempt == 0:
                    conn = idle.pop()
                else:
                    conn = await Connection.open(url)
                    opened += 1
                status = await conn.get(path)
                idle.append(conn)
                break
            except (OSError, asyncio.IncompleteReadError) as exc:
                # the server closes keep-alive connections idle for 5 s: retry once on a new one, as clients do
                kinds[type(exc).__name__] = kinds.get(type(exc).__name__, 0) + 1
        errors += status != 200
        latencies.append(time.perf_counter() - scheduled)

    tasks = []
    t0 = time.perf_counter()
    for i in range(n):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled, _path(rng, top_user))))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    for conn in idle:
        conn.close()
    return {"client": "asyncio streams, open loop", "target_rps": rate, "achieved_rps": round(n / elapsed, 1),
            "requests": n, "connections_opened": opened, **_percentiles(latencies), "errors": errors,
            "retried": kinds}  # fmt: skip


def measure(url: str, top_user: int, duration: float, client: str, tmp: Path) -> dict[str, Any]:
    if client == "wrk":
        closed = closed_loop_wrk(url, top_user, duration, tmp)
    else:
        closed = asyncio.run(_closed_loop(url, top_user, duration))
    fixed = asyncio.run(_open_loop(url, top_user, 1_000.0, duration))
    return {"closed_loop": closed, "fixed_rate_1000": fixed}


# --------------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small home, 3 s runs (CI smoke)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--home", type=Path, help="serve this published home instead of building one")
    ap.add_argument("--duration", type=float, default=None, help="seconds per run (default 10, quick 3)")
    ap.add_argument(
        "--client",
        choices=["auto", "wrk", "asyncio"],
        default="auto",
        help="closed-loop load generator (auto: wrk when installed)",
    )
    ap.add_argument("--bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare is not None:
        bare_server(args.bare)
        return
    duration = args.duration or (3.0 if args.quick else 10.0)
    client = "wrk" if args.client == "wrk" or (args.client == "auto" and shutil.which("wrk")) else "asyncio"
    SCRATCH.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp_dir:
        tmp = Path(tmp_dir)
        t0 = time.perf_counter()
        home = args.home.resolve() if args.home else build_home(tmp, args.quick)
        build_s = time.perf_counter() - t0
        top_user, n_users = max_user(home)
        env = {**os.environ, "CINEMATCH_HOME": str(home)}
        env.pop("CINEMATCH_LOG_LEVEL", None)
        results: dict[str, Any] = {"machine": machine(), "load": os.getloadavg()[0], "users": n_users,
                                   "duration_s": duration, "connections": CONNECTIONS, "build_home_s": round(build_s, 1)}  # fmt: skip
        for name, cmd in (
            ("cinematch", [sys.executable, "-m", "cinematch", "serve", "--port", "0", "--json", "--no-access-log"]),
            ("bare_fastapi", [sys.executable, __file__, "--bare", "0"]),
        ):
            proc, url = start(cmd, env)
            try:
                results[name] = measure(url, top_user, duration, client, tmp)
            finally:
                stop(proc)
    c, b = results["cinematch"], results["bare_fastapi"]
    results["targets"] = {
        "requests_per_second": TARGET_RPS,
        "p99_ms_at_1000": TARGET_P99_MS,
        "met": c["closed_loop"]["requests_per_second"] >= TARGET_RPS
        and c["fixed_rate_1000"]["p99_ms"] < TARGET_P99_MS
        and c["closed_loop"]["errors"] == 0
        and c["fixed_rate_1000"]["errors"] == 0,
    }
    print(f"{n_users:,} users, {duration:g} s per run, {CONNECTIONS} connections, load generator: "
          f"{c['closed_loop']['client']} (same machine), load average at start {results['load']:.2f}")  # fmt: skip
    print(f"{'':28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}   | 1,000 req/s: p50 / p99 / max ms, errors")
    for label, r in (("cinematch /recommendations", c), ("bare FastAPI (ceiling)", b)):
        cl, fx = r["closed_loop"], r["fixed_rate_1000"]
        print(f"{label:28}{cl['requests_per_second']:>10,.0f}{cl['p50_ms']:>10.2f}{cl['p99_ms']:>10.2f}"
              f"{cl['errors']:>8}   | {fx['p50_ms']:.2f} / {fx['p99_ms']:.2f} / {fx['max_ms']:.2f}, {fx['errors']}")  # fmt: skip
    share = c["closed_loop"]["requests_per_second"] / b["closed_loop"]["requests_per_second"]
    print(f"cinematch reaches {share:.0%} of the bare framework; targets (>= {TARGET_RPS:,} req/s, p99 < "
          f"{TARGET_P99_MS:g} ms at 1,000 req/s): {'met' if results['targets']['met'] else 'MISSED'}")  # fmt: skip
    write_json(args.json, results)


if __name__ == "__main__":
    main()
