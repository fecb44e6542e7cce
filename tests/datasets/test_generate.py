"""Tests of the seeded MovieLens-shaped generator: shape, determinism, uniqueness and drift."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cinematch.core.errors import BadInput
from cinematch.datasets.generate import RATINGS_SCHEMA, generate_dataset, generate_tables
from cinematch.datasets.generate_config import GenerateConfig, batch_sizes, drift_schedule, scale_config
from cinematch.datasets.generate_entities import GENRES

SMALL = GenerateConfig(users=300, movies=200, ratings=5_000, weeks=3, batch_ratings=500, drift_week=2, seed=7)
# Big enough that batch means are precise (se ~0.02) and the drift assertions have a wide margin.
DRIFT = GenerateConfig(users=1_000, movies=800, ratings=20_000, weeks=3, batch_ratings=2_000, drift_week=2)
BATCHES = ["batch_w1", "batch_w2", "batch_w3"]


@pytest.fixture(scope="module")
def small() -> dict[str, pa.Table]:
    return generate_tables(SMALL)


def _keys(table: pa.Table) -> np.ndarray:
    return table.column("user_id").to_numpy() * 10**9 + table.column("movie_id").to_numpy()


def _ratings(table: pa.Table) -> np.ndarray:
    return table.column("rating").to_numpy()


def test_same_seed_same_tables_and_different_seed_differs(small: dict[str, pa.Table]) -> None:
    again = generate_tables(SMALL)
    assert again.keys() == small.keys()
    for name, table in small.items():
        assert again[name].equals(table), name
    other = generate_tables(GenerateConfig(**{**SMALL.__dict__, "seed": 8}))
    assert not other["ratings"].equals(small["ratings"])
    assert not other["batch_w3"].equals(small["batch_w3"])


def test_base_does_not_depend_on_number_of_weeks(small: dict[str, pa.Table]) -> None:
    fewer = generate_tables(GenerateConfig(**{**SMALL.__dict__, "weeks": 1}))
    assert fewer["ratings"].equals(small["ratings"])
    assert fewer["batch_w1"].equals(small["batch_w1"])


def test_schema_and_row_counts(small: dict[str, pa.Table]) -> None:
    assert set(small) == {"ratings", "movies", "users", *BATCHES}
    assert small["ratings"].schema.equals(RATINGS_SCHEMA)
    assert small["ratings"].num_rows == SMALL.ratings
    for name in BATCHES:
        assert small[name].schema.equals(RATINGS_SCHEMA), name
        assert small[name].num_rows == SMALL.batch_ratings
    assert small["ratings"].column_names == ["user_id", "movie_id", "rating", "rated_at"]
    assert small["movies"].column_names == ["movieId", "title", "genres"]
    assert small["users"].schema.names == ["user_id", "signup_at", "country", "age_band"]
    assert small["users"].schema.field("signup_at").type == pa.timestamp("us")


def test_ratings_are_half_stars_in_range(small: dict[str, pa.Table]) -> None:
    for name in ["ratings", *BATCHES]:
        r = _ratings(small[name])
        assert r.min() >= 0.5 and r.max() <= 5.0, name
        assert np.array_equal(r * 2, np.round(r * 2)), name


def test_histogram_looks_like_movielens() -> None:
    r = _ratings(generate_tables(DRIFT)["ratings"])
    values, counts = np.unique(r, return_counts=True)
    assert values[counts.argmax()] == 4.0
    assert 3.35 <= r.mean() <= 3.7
    assert 0.9 <= r.std() <= 1.2


def test_no_duplicate_pairs_within_or_across_files(small: dict[str, pa.Table]) -> None:
    keys = np.concatenate([_keys(small[name]) for name in ["ratings", *BATCHES]])
    assert np.unique(keys).size == keys.size


def test_movie_popularity_is_heavy_tailed(small: dict[str, pa.Table]) -> None:
    counts = np.sort(np.bincount(small["ratings"].column("movie_id").to_numpy()))[::-1]
    top = counts[: SMALL.movies // 10].sum()
    assert top / counts.sum() > 0.40


def test_user_activity_is_heavy_tailed() -> None:
    # A catalogue much larger than the mean activity, so the per-user cap does not clip the log-normal tail.
    ratings = generate_tables(GenerateConfig(users=500, movies=1_000, ratings=10_000, weeks=0))["ratings"]
    counts = np.sort(np.bincount(ratings.column("user_id").to_numpy())[1:])[::-1]
    assert counts[:50].sum() / counts.sum() > 0.25
    assert counts.max() > 8 * np.median(counts)


def test_default_batch_sizes_keep_week_one_below_detector_minimum() -> None:
    sizes = batch_sizes(GenerateConfig())
    assert sizes[0] < 1_000
    assert sizes[1:] == [3_000, 3_000]
    assert batch_sizes(SMALL) == [500, 500, 500]


def test_default_config_generates_the_documented_sizes() -> None:
    tables = generate_tables(GenerateConfig())
    assert tables["ratings"].num_rows == 100_000
    assert [tables[name].num_rows for name in BATCHES] == batch_sizes(GenerateConfig())


def test_drift_schedule_ramps_from_early_to_full() -> None:
    weeks = drift_schedule(GenerateConfig(weeks=4, drift_week=2))
    assert [w["phase"] for w in weeks] == ["baseline", "early", "drift", "drift"]
    strengths = [w["strength"] for w in weeks]
    assert strengths[0] == 0 and strengths[1] == 0.5 and strengths[-1] == 1.0
    assert strengths == sorted(strengths)
    assert weeks[1]["target_mean_drop"] == pytest.approx(0.3)
    assert drift_schedule(GenerateConfig(weeks=3, drift_week=5))[-1]["strength"] == 0


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_drift_lowers_mean_and_baseline_week_matches_base(seed: int) -> None:
    tables = generate_tables(GenerateConfig(**{**DRIFT.__dict__, "seed": seed}))
    base = _ratings(tables["ratings"]).mean()
    assert abs(_ratings(tables["batch_w1"]).mean() - base) < 0.1
    assert base - _ratings(tables["batch_w3"]).mean() >= 0.3
    low = [(_ratings(tables[name]) <= 2.0).mean() for name in ["ratings", "batch_w3"]]
    assert low[1] > low[0] + 0.05


def test_drift_genre_rises_sharply() -> None:
    tables = generate_tables(DRIFT)
    movies = tables["movies"].to_pandas()
    horror = set(movies.loc[movies.genres.str.split("|").map(lambda g: "Horror" in g), "movieId"])

    def share(name: str) -> float:
        return float(np.isin(tables[name].column("movie_id").to_numpy(), list(horror)).mean())

    assert share("batch_w3") > 2 * share("ratings")


def test_new_users_and_movies_take_exactly_their_scheduled_shares() -> None:
    tables = generate_tables(DRIFT)
    for spec in drift_schedule(DRIFT)[1:]:
        batch = tables[f"batch_w{spec['week']}"]
        new_users = (batch.column("user_id").to_numpy() > DRIFT.users).mean()
        new_movies = (batch.column("movie_id").to_numpy() > DRIFT.movies).mean()
        assert new_users == pytest.approx(spec["new_user_share"], abs=2 / batch.num_rows), spec
        assert new_movies == pytest.approx(spec["new_movie_share"], abs=2 / batch.num_rows), spec


@pytest.mark.parametrize("drift_week", [2, 3])
def test_new_ids_appear_only_from_the_drift_week(drift_week: int) -> None:
    config = GenerateConfig(**{**SMALL.__dict__, "drift_week": drift_week})
    tables = generate_tables(config)
    for week, name in enumerate(BATCHES, start=1):
        users = tables[name].column("user_id").to_numpy()
        movies = tables[name].column("movie_id").to_numpy()
        is_new = (users > config.users).any() or (movies > config.movies).any()
        assert is_new == (week >= drift_week), name
        if week >= drift_week:
            assert (users > config.users).any() and (movies > config.movies).any(), name
    base = tables["ratings"]
    assert base.column("user_id").to_numpy().max() <= config.users
    assert base.column("movie_id").to_numpy().max() <= config.movies


def test_timestamps_base_then_consecutive_weeks(small: dict[str, pa.Table]) -> None:
    start = np.datetime64("2024-01-01T00:00:00", "us")
    base = small["ratings"].column("rated_at").to_numpy()
    assert base.min() >= start and base.max() < start + np.timedelta64(84, "D")
    previous_end = base.max()
    for week, name in enumerate(BATCHES, start=1):
        ts = small[name].column("rated_at").to_numpy()
        lo = start + np.timedelta64(84 + 7 * (week - 1), "D")
        assert ts.min() > previous_end and ts.min() >= lo and ts.max() < lo + np.timedelta64(7, "D"), name
        assert np.all(np.diff(ts) >= np.timedelta64(0, "us")), "batches are in time order"
        previous_end = ts.max()


def test_users_sign_up_before_they_rate(small: dict[str, pa.Table]) -> None:
    users = small["users"]
    assert np.array_equal(users.column("user_id").to_numpy(), np.arange(1, users.num_rows + 1))
    signup = users.column("signup_at").to_numpy()
    for name in ["ratings", *BATCHES]:
        uid = small[name].column("user_id").to_numpy()
        assert np.all(signup[uid - 1] <= small[name].column("rated_at").to_numpy()), name


def test_generate_dataset_writes_files_and_json_summary(tmp_path) -> None:
    messages: list[str] = []
    summary = generate_dataset(tmp_path / "out", SMALL, progress=messages.append)
    json.dumps(summary)  # must be JSON-serializable
    out = tmp_path / "out"
    expected = {
        "ratings.parquet",
        "movies.csv",
        "users.parquet",
        *(f"{b}.parquet" for b in BATCHES),
        "users.csv",
        "sessions.csv",
        "content.json",
    }  # the viewing files (datasets/viewing.py)
    assert {p.name for p in out.iterdir()} == expected
    assert summary["files"]["ratings"]["rows"] == SMALL.ratings
    assert summary["files"]["batch_w1"]["min_rated_at"] > summary["files"]["ratings"]["max_rated_at"]
    assert [w["phase"] for w in summary["weeks"]] == ["baseline", "early", "drift"]
    assert summary["weeks"][2]["observed"]["mean_drop"] > summary["weeks"][0]["observed"]["mean_drop"]
    assert f"ratings {SMALL.ratings}" in messages
    written = pq.read_table(out / "batch_w2.parquet")
    assert written.schema.equals(RATINGS_SCHEMA)
    assert written.equals(generate_tables(SMALL)["batch_w2"])


def test_movies_csv_is_movielens_format_and_covers_all_ratings(tmp_path) -> None:
    generate_dataset(tmp_path, SMALL)
    text = (tmp_path / "movies.csv").read_text()
    assert text.splitlines()[0] == "movieId,title,genres"
    with (tmp_path / "movies.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert all(re.search(r" \((19[5-9]\d|20[0-2]\d)\)$", row["title"]) for row in rows)
    assert any("," in row["title"] for row in rows), "some titles need CSV quoting"
    for row in rows:
        genres = row["genres"].split("|")
        assert 1 <= len(genres) <= 3 and set(genres) <= set(GENRES) and len(set(genres)) == len(genres)
    movies = pd.read_csv(tmp_path / "movies.csv")
    assert movies.movieId.is_unique and len(movies) == len(rows)
    known = set(movies.movieId)
    for name in ["ratings", *BATCHES]:
        assert set(pq.read_table(tmp_path / f"{name}.parquet").column("movie_id").to_pylist()) <= known, name


def test_release_years_skew_recent(small: dict[str, pa.Table]) -> None:
    years = small["movies"].column("title").to_pandas().str.extract(r"\((\d{4})\)$")[0].astype(int)
    assert years.between(1950, 2024).all()
    assert years.median() > 1990


def test_invalid_configs_raise_bad_input() -> None:
    with pytest.raises(BadInput, match="do not fit"):
        GenerateConfig(users=10, movies=10, ratings=1_000)
    with pytest.raises(BadInput, match="ISO date"):
        GenerateConfig(start="yesterday")
    with pytest.raises(BadInput, match="--drift-week"):
        GenerateConfig(drift_week=0)
    with pytest.raises(BadInput):
        scale_config("huge", 1)  # type: ignore[arg-type]


def test_scale_presets() -> None:
    assert scale_config("small", 3) == GenerateConfig(seed=3)
    assert scale_config("medium", 1).ratings == 1_000_000
    large = scale_config("large", 1)
    assert large.ratings == 25_000_000 and large.users > 100_000


@settings(max_examples=15, deadline=None)
@given(
    users=st.integers(40, 400),
    movies=st.integers(40, 400),
    density=st.floats(0.01, 0.15),
    weeks=st.integers(0, 4),
    drift_week=st.integers(1, 5),
    seed=st.integers(0, 2**32),
    taste=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_any_feasible_config_gives_exact_unique_counts(
    users: int, movies: int, density: float, weeks: int, drift_week: int, seed: int, taste: float
) -> None:
    config = GenerateConfig(
        users=users, movies=movies, ratings=max(1, int(density * users * movies)), weeks=weeks,
        drift_week=drift_week, seed=seed, taste=taste,
    )  # fmt: skip
    tables = generate_tables(config)
    names = ["ratings", *(f"batch_w{k}" for k in range(1, weeks + 1))]
    assert [tables[n].num_rows for n in names] == [config.ratings, *batch_sizes(config)]
    keys = np.concatenate([_keys(tables[n]) for n in names])
    assert np.unique(keys).size == keys.size
