"""The ml-100k fold harness (benchmarks/bench_folds.py) reads u1-u5 base/test files and scores every fold."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from cinematch.recommender.als_params import ALSParams

_SPEC = importlib.util.spec_from_file_location(
    "bench_folds", Path(__file__).resolve().parents[2] / "benchmarks" / "bench_folds.py"
)
bench_folds = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench_folds)


def write_ml100k(directory: Path) -> None:
    """Five u{i}.base/u{i}.test pairs in ml-100k's tab-separated u.data format, block-structured tastes."""
    rng = np.random.default_rng(11)
    users = np.repeat(np.arange(1, 61), 30)
    group = (users > 30).astype(int)
    items = rng.integers(1, 41, size=users.size)
    loved = (items > 20).astype(int) == group
    ratings = np.where(loved, rng.choice([4, 5], users.size), rng.choice([1, 2], users.size))
    keys = np.unique(users * 100 + items, return_index=True)[1]
    users, items, ratings = users[keys], items[keys], ratings[keys]
    stamps = 881250949 + np.arange(users.size)
    fold = rng.permutation(users.size) % 5
    for i in range(5):
        for name, mask in (("base", fold != i), ("test", fold == i)):
            table = np.column_stack([users[mask], items[mask], ratings[mask], stamps[mask]])
            np.savetxt(directory / f"u{i + 1}.{name}", table, fmt="%d", delimiter="\t")


def test_five_folds_are_read_and_scored(tmp_path: Path) -> None:
    write_ml100k(tmp_path)
    folds = bench_folds.ml100k_folds(tmp_path)
    assert len(folds) == 5 and all(test.num_rows > 0 for _, test in folds)
    out = bench_folds.run_folds(folds, ALSParams(rank=4, iterations=8))
    als, pop = out["mean"]["als"], out["mean"]["most_popular"]
    # the taste blocks are learnable: ALS predicts well and ranks the loved half first, popularity cannot
    assert als["rmse"] < 1.0
    assert als["precision_at_10"] > pop["precision_at_10"] + 0.1


def test_missing_fold_files_are_named(tmp_path: Path) -> None:
    write_ml100k(tmp_path)
    (tmp_path / "u3.test").unlink()
    with pytest.raises(SystemExit, match="u3.test"):
        bench_folds.ml100k_folds(tmp_path)
