"""`make bench`: run every benchmark in one go, print a table of figures and ratios, write BENCHMARKS.md.

    .venv/bin/python benchmarks/run.py [--quick] [--only ingest,etl,...] [--no-write]

Each benchmark is a script of this folder run as a subprocess with `--json`; its figures are collected
into one table. Benchmarks may read ../shared/data when it is there (ML-latest-small for ALS accuracy).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _common import machine  # noqa: E402

# name -> (script, extra args for a full run, figures to show: (label, key, unit))
BENCHMARKS: dict[str, tuple[str, list[str], list[tuple[str, str, str]]]] = {
    "ingest": ("bench_ingest.py", [], [
        ("cinematch ingest", "cinematch_rows_per_second", "rows/s"),
        ("pandas to_sql (SQLite)", "pandas_rows_per_second", "rows/s"),
        ("speed-up vs pandas", "speedup", "x"),
    ]),
    "generate": ("bench_generate.py", [], []),
    "etl": ("bench_etl.py", [], [
        ("full refresh", "full_refresh_seconds", "s"),
        ("full refresh throughput", "full_refresh_rows_per_second", "rows/s"),
        ("incremental weekly batch", "incremental_seconds", "s"),
    ]),
    "als": ("bench_als.py", [], [
        ("fit, first run", "runs.0.fit_s", "s"),
        ("seconds per iteration", "runs.0.s_per_iter_median", "s"),
        ("Spark MLlib s/iter, same data", "runs.0.spark.s_per_iter", "s"),
        ("speed-up vs Spark MLlib", "runs.0.spark.s_per_iter/runs.0.s_per_iter_median", "x"),
        ("test RMSE", "runs.0.test_rmse", ""),
        ("Spark MLlib test RMSE", "runs.0.spark.test_rmse", ""),
    ]),
    "drift": ("bench_drift.py", [], [
        ("check with stored reference stats", "load_compare_ratings_only_s", "s"),
        ("scipy ks_2samp on raw arrays", "scipy_ks_2samp_s", "s"),
        ("speed-up vs scipy", "scipy_ks_2samp_s/load_compare_ratings_only_s", "x"),
    ]),
    "serving": ("bench_serving.py", [], [
        ("cinematch API, closed loop", "cinematch.closed_loop.requests_per_second", "req/s"),
        ("  p99 latency", "cinematch.closed_loop.p99_ms", "ms"),
        ("bare FastAPI (ceiling)", "bare_fastapi.closed_loop.requests_per_second", "req/s"),
        ("share of the ceiling", "cinematch.closed_loop.requests_per_second/bare_fastapi.closed_loop.requests_per_second", "x"),
    ]),
    "folds": ("bench_folds.py", [], [
        ("ALS RMSE, mean over 5 folds", "mean.als.rmse", ""),
        ("ALS precision@10", "mean.als.precision_at_10", ""),
        ("most-popular precision@10", "mean.most_popular.precision_at_10", ""),
        ("ALS vs most-popular, precision@10", "mean.als.precision_at_10/mean.most_popular.precision_at_10", "x"),
    ]),
    "spark": ("bench_spark.py", [], [
        ("DuckDB full refresh, largest size", "etl.-1.duckdb.etl_s", "s"),
        ("Spark local[2] full refresh, same size", "etl.-1.spark.etl_s", "s"),
        ("Spark / DuckDB", "etl.-1.spark.etl_s/etl.-1.duckdb.etl_s", "x"),
    ]),
    "postgres": ("bench_postgres.py", [], [
        ("cinematch ingest into PostgreSQL", "cinematch_rows_per_second", "rows/s"),
        ("  of which the COPY phase", "copy_rows_per_second", "rows/s"),
        ("pandas to_sql (PostgreSQL)", "pandas_rows_per_second", "rows/s"),
        ("speed-up vs pandas", "speedup", "x"),
    ]),
    "ranking": ("bench_ranking.py", [], [
        ("served P@10, MS Recommenders split", "accuracy.target.served.precision_at_10", ""),
        ("served NDCG@10, same protocol", "accuracy.target.served.ndcg_at_10", ""),
        ("most-popular NDCG@10, same split", "accuracy.target.most_popular.ndcg_at_10", ""),
        ("served / popular NDCG@10", "accuracy.target.served.ndcg_at_10/accuracy.target.most_popular.ndcg_at_10", "x"),
        ("ranking model fit, no search", "scale.fit.seconds", "s"),
        ("  peak RSS", "scale.fit.peak_rss_gb", "GB"),
        ("top-10 with because, every user", "scale.top_n.seconds", "s"),
        ("implicit top-10, every user", "scale.implicit.recommend_all_s", "s"),
        ("implicit ALS s/iteration, same data", "scale.implicit.s_per_iter", "s"),
        ("CineMatch iALS s/iteration (alpha 1)", "scale.implicit.own_s_per_iter", "s"),
        ("implicit / CineMatch, s/iteration", "scale.implicit.s_per_iter/scale.implicit.own_s_per_iter", "x"),
        ("EASE at its bound, fit+compact peak", "scale.ease.peak_rss_gb", "GB"),
    ]),
    "replay": ("bench_replay.py", [], [
        ("T1 ml-small compare (target 300 s)", "ml.wall_seconds", "s"),
        ("T2 generated drift (target 600 s)", "generated.wall_seconds", "s"),
        ("  peak RSS (target 12 GB)", "generated.peak_rss_gb", "GB"),
    ]),
    "warm_start": ("bench_warm_start.py", [], [
        ("ALS cold fit (12 it)", "als.0.seconds", "s"),
        ("ALS warm fit (2 it)", "als.2.seconds", "s"),
        ("  ALS test RMSE, cold", "als.0.quality", ""),
        ("  ALS test RMSE, warm", "als.2.quality", ""),
        ("iALS cold fit (8 it)", "ials.0.seconds", "s"),
        ("iALS warm fit (2 it)", "ials.2.seconds", "s"),
        ("  NDCG@10 cold", "ials.0.quality", ""),
        ("  NDCG@10 warm", "ials.2.quality", ""),
    ]),
    "mlflow": ("bench_mlflow.py", [], [
        ("training on 1M, MLflow off", "off_median_s", "s"),
        ("same training, MLflow on", "on_median_s", "s"),
        ("overhead ratio (target 1.10)", "overhead_ratio", "x"),
        ("  mirror after training, median", "mirror_median_s", "s"),
    ]),
}  # fmt: skip


def figure(doc: dict, key: str) -> float | None:
    """A figure by dotted path (list items by index); ``a/b`` is the ratio of two figures."""
    if "/" in key:
        num, den = (figure(doc, k) for k in key.split("/"))
        return round(num / den, 2) if num is not None and den else None
    value: object = doc
    for part in key.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def summary(results: list[dict]) -> list[str]:
    """One line per figure: benchmark, what, value, unit."""
    lines = []
    for r in results:
        for label, key, unit in BENCHMARKS[r["name"]][2]:
            value = figure(r["figures"], key)
            if value is not None:
                shown = f"{value:,.4g}" if isinstance(value, float) and abs(value) < 100 else f"{value:,.0f}"
                lines.append(f"{r['name']:>9}  {label:<36} {shown:>14} {unit}")
    return lines


def run_one(name: str, quick: bool, out_dir: Path) -> dict:
    script, extra, _ = BENCHMARKS[name]
    out = out_dir / f"{name}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(HERE / script), "--json", str(out), *(["--quick"] if quick else extra)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    doc = json.loads(out.read_text()) if out.exists() else {}
    return {"name": name, "command": " ".join(["python", f"benchmarks/{script}", *cmd[2:]]).replace(str(out), "…"),
            "seconds": round(time.perf_counter() - t0, 1), "ok": proc.returncode == 0, "stdout": proc.stdout,
            "stderr_tail": proc.stderr.strip().splitlines()[-3:], "figures": doc}  # fmt: skip


def render(results: list[dict], quick: bool) -> str:
    m = machine()
    lines = [
        "## Latest run of every benchmark",
        "",
        f"Generated by `make bench{'-quick' if quick else ''}` (`python benchmarks/run.py{' --quick' if quick else ''}`)"
        f" on {time.strftime('%Y-%m-%d')}: Python {m['python']}, {m['cpus']} CPUs, {m['system']} ({m['machine']}).",
        "Every figure below comes from that one run; ratios compare alternatives measured side by side in it.",
        "",
    ]
    lines += ["### Summary", "", "```", *summary(results), "```", ""]
    for r in results:
        lines += [f"### {r['name']}", "", f"`{r['command']}` ({r['seconds']} s{'' if r['ok'] else ', FAILED'})", ""]
        lines += ["```", r["stdout"].rstrip() or "(no output)", "```", ""]
    return "\n".join(lines) + "\n"


START, END = "<!-- make bench: start -->", "<!-- make bench: end -->"


def write_record(text: str, quick: bool) -> Path:
    """A full run replaces the generated block of BENCHMARKS.md (the notes around it stay); --quick writes aside.

    Quick sizes are a smoke test, not a record: they go to benchmarks/results/BENCHMARKS-quick.md.
    """
    if quick:
        path = HERE / "results" / "BENCHMARKS-quick.md"
        path.write_text(text)
        return path
    path = ROOT / "BENCHMARKS.md"
    old = path.read_text() if path.exists() else ""
    block = f"{START}\n{text.rstrip()}\n{END}"
    if START in old and END in old:
        head, rest = old.split(START, 1)
        new = head + block + rest.split(END, 1)[1]
    else:
        new = block + "\n\n" + old
    path.write_text(new)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes (CI smoke)")
    ap.add_argument("--only", help="comma-separated subset of: " + ", ".join(BENCHMARKS))
    ap.add_argument("--no-write", action="store_true", help="do not rewrite BENCHMARKS.md")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    results = []
    for name in names:
        print(f"== {name}", flush=True)
        r = run_one(name, args.quick, out_dir)
        print(r["stdout"].rstrip())
        if not r["ok"]:
            print("FAILED:", *r["stderr_tail"], sep="\n  ")
        results.append(r)
    print("\n== summary")
    print("\n".join(summary(results)))
    if not args.no_write:
        print("wrote", write_record(render(results, args.quick), args.quick))
    sys.exit(0 if all(r["ok"] for r in results) else 1)


if __name__ == "__main__":
    main()
