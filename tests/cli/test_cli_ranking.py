"""The ranking side of the CLI, run as users and outside checks do: `train --lists-out`, `evaluate`."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import pytest

from cinematch.datasets.generate import generate_tables
from cinematch.datasets.generate_config import GenerateConfig
from cinematch.recommender.protocols import split_protocol


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A generated history with tastes, split per user 75/25; the test file marks every held-out rating 5.0."""
    root = tmp_path_factory.mktemp("ranking_cli")
    data = generate_tables(GenerateConfig(users=300, movies=150, ratings=9000, weeks=1, batch_ratings=100, seed=11))
    train, test, _ = split_protocol(data["ratings"], "random_per_user", seed=42)
    paths = []
    for name, table, force in (("all", data["ratings"], False), ("train", train, False), ("test", test, True)):
        path = root / f"{name}.csv"
        cols = [table.column(c).to_pylist() for c in ("user_id", "movie_id", "rating", "rated_at")]
        with path.open("w") as f:
            f.write("userId,movieId,rating,timestamp\n")
            for u, m, r, t in zip(*cols, strict=True):
                f.write(f"{u},{m},{5.0 if force else r},{int(t.timestamp())}\n")
        paths.append(path)
    return paths[0], paths[1], paths[2]


def _recompute(lists: Path, test: Path, k: int = 10) -> tuple[float, float]:
    """P@10 and binary NDCG@10 from the written lists, every test item relevant (as ../shared/ranking-check does)."""
    got: dict[int, list[tuple[int, int]]] = defaultdict(list)
    with lists.open() as f:
        for r in csv.DictReader(f):
            got[int(r["user_id"])].append((int(r["rank"]), int(r["movie_id"])))
    truth: dict[int, set[int]] = defaultdict(set)
    with test.open() as f:
        for r in csv.DictReader(f):
            truth[int(r["userId"])].add(int(r["movieId"]))
    disc = [1 / math.log2(i + 2) for i in range(k)]
    precision, ndcg = [], []
    for user, relevant in truth.items():
        top = [m for _, m in sorted(got.get(user, []))][:k]
        hits = [1.0 if m in relevant else 0.0 for m in top]
        precision.append(sum(hits) / k)
        ideal = sum(disc[: min(k, len(relevant))])
        ndcg.append(sum(h * d for h, d in zip(hits, disc, strict=False)) / ideal)
    return sum(precision) / len(precision), sum(ndcg) / len(ndcg)


def test_train_writes_the_lists_it_was_scored_on(cli, files, tmp_path: Path) -> None:
    _, train, test = files
    lists = tmp_path / "lists.csv"
    res = cli("train", "--ratings", train, "--test", test, "--lists-out", lists, "--json")
    assert res.code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["ranking_model"] and doc["map_at_10"] is not None
    assert lists.read_text().splitlines()[0] == "user_id,rank,movie_id"
    precision, ndcg = _recompute(lists, test)
    assert doc["precision_at_10"] == pytest.approx(precision, abs=1e-9)
    assert doc["ndcg_at_10"] == pytest.approx(ndcg, abs=1e-9)
    base = doc["baseline"]["most_popular"]
    assert {"precision_at_10", "recall_at_10", "ndcg_at_10", "map_at_10"} <= set(base)
    # generated users have tastes: the served lists beat most-popular by a wide margin
    assert doc["ndcg_at_10"] > 1.3 * base["ndcg_at_10"] and doc["precision_at_10"] > base["precision_at_10"]


def test_evaluate_reports_every_model_on_one_split(cli, files) -> None:
    data, _, _ = files
    res = cli("evaluate", "--ratings", data, "--protocol", "temporal", "--min-rating", "0", "--json")
    assert res.code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["protocol"] == "temporal" and doc["min_rating"] == 0 and doc["k"] == 10
    names = [row["model"] for row in doc["models"]]
    assert names[0] == "most_popular" and any(n.startswith("als") for n in names) and len(names) >= 4
    for row in doc["models"]:
        assert 0 <= row["precision_at_10"] <= 1 and 0 <= row["ndcg_at_10"] <= 1 and 0 < row["coverage"] <= 1
        assert row["avg_rec_popularity"] > 0 and row["n_users_evaluated"] > 0
    # every model is judged on the same users: the split is one
    assert len({row["n_users_evaluated"] for row in doc["models"]}) == 1
    human = cli("evaluate", "--ratings", data, "--protocol", "leave_last_n")
    assert human.code == 0 and "most_popular" in human.stdout and "leave_last_n" in human.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--lists-out", "x.csv"], "--lists-out and --min-rating go with --ratings"),
        (["evaluate", "--test", "t.csv"], "--test needs --ratings"),
        (["evaluate", "--protocol", "sideways"], "sideways"),
    ],
)
def test_ranking_options_misused_exit_2(cli, args: list[str], message: str) -> None:
    res = cli(*args)
    assert res.code == 2 and message in res.stderr and "Traceback" not in res.stderr
