"""Time the dataset generator (generate_tables) and writing its files, at 1M and 25M base ratings."""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from cinematch.datasets.generate import generate_tables
from cinematch.datasets.generate_config import GenerateConfig, scale_config
from cinematch.datasets.generate_files import write_tables

DEFAULT_OUT = Path(__file__).resolve().parent / ".data" / "bench_generate"


def config_for(ratings: int, seed: int) -> GenerateConfig:
    """The preset whose size matches, else MovieLens-25M proportions (~154 ratings/user, ~400/movie)."""
    for scale in ("small", "medium", "large"):
        preset = scale_config(scale, seed)  # type: ignore[arg-type]
        if preset.ratings == ratings:
            return preset
    return GenerateConfig(
        users=max(2_000, ratings // 154), movies=max(1_500, ratings // 400), ratings=ratings, seed=seed
    )


def run_one(config: GenerateConfig, out_dir: Path, keep: bool) -> dict[str, float]:
    """Generate and write once; runs in a fresh process so peak RSS belongs to this size alone."""
    t0, c0 = time.perf_counter(), time.process_time()
    tables = generate_tables(config)
    t_gen, c_gen = time.perf_counter() - t0, time.process_time() - c0
    rows = sum(t.num_rows for name, t in tables.items() if name == "ratings" or name.startswith("batch_"))
    t1, c1 = time.perf_counter(), time.process_time()
    write_tables(tables, out_dir)
    t_write, c_write = time.perf_counter() - t1, time.process_time() - c1
    size_mb = sum(p.stat().st_size for p in out_dir.iterdir()) / 1e6
    if not keep:
        shutil.rmtree(out_dir, ignore_errors=True)
    return {
        "ratings": config.ratings,
        "rows": rows,
        "generate_s": t_gen,
        "write_s": t_write,
        "generate_cpu_s": c_gen,
        "write_cpu_s": c_write,
        "size_mb": size_mb,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,  # KiB on Linux
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ratings", type=int, action="append", help="base ratings (repeatable); default 1M and 25M")
    parser.add_argument("--quick", action="store_true", help="100k only")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"scratch directory (default {DEFAULT_OUT})")
    parser.add_argument("--keep", action="store_true", help="keep the written files")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    sizes = [100_000] if args.quick else (args.ratings or [1_000_000, 25_000_000])

    results = []
    ctx = mp.get_context("spawn")
    for n in sizes:
        config = config_for(n, args.seed)
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            res = pool.submit(run_one, replace(config), args.out / f"r{n}", args.keep).result()
        results.append(res)
        print(f"done {n:,} ratings ({config.users:,} users, {config.movies:,} movies)", file=sys.stderr, flush=True)

    # Wall seconds suffer when other jobs share the 2 cores; CPU seconds show the generator's own cost.
    header = (
        f"{'ratings':>12} {'rows+batches':>13} {'generate s':>11} {'ratings/s':>12} {'write s':>8} "
        f"{'total s':>8} {'total r/s':>12} {'gen cpu s':>10} {'write cpu s':>12} {'MB':>6} {'peak GB':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        total = r["generate_s"] + r["write_s"]
        print(
            f"{r['ratings']:>12,} {r['rows']:>13,} {r['generate_s']:>11.2f} {r['rows'] / r['generate_s']:>12,.0f} "
            f"{r['write_s']:>8.2f} {total:>8.2f} {r['rows'] / total:>12,.0f} {r['generate_cpu_s']:>10.2f} "
            f"{r['write_cpu_s']:>12.2f} {r['size_mb']:>6.0f} {r['peak_rss_gb']:>8.2f}"
        )
    print("ratings/s counts base + batch rows; seconds are wall time except the cpu columns")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"benchmark": "generate", "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
