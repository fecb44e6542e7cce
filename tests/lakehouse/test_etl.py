"""Silver and the ETL run: dedup, placeholders, gates, incremental = full refresh, idempotence, backfill."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import make_ratings

from cinematch.core.errors import QualityGateFailed
from cinematch.core.settings import Settings
from cinematch.ingest.bronze import ingest_file
from cinematch.lakehouse import sources as extras
from cinematch.lakehouse.etl import logical_end, run_etl
from cinematch.lakehouse.gold import GOLD_MODELS
from cinematch.storage.warehouse import write_session

MOVIES_CSV = "movieId,title,genres\n" + "".join(
    f"{i},Movie {i} ({1990 + i % 30}),{'Drama|Comedy' if i % 2 else 'Horror'}\n" for i in range(1, 70)
)


def write_batches(tmp_path: Path, n_batches: int = 3) -> list[Path]:
    rng = np.random.default_rng(7)
    paths = []
    for week in range(1, n_batches + 1):
        table = make_ratings(rng, n=300, users=40, movies=80, start=f"2024-0{week}-01")
        path = tmp_path / f"batch_w{week}.parquet"
        pq.write_table(table, path)
        paths.append(path)
    return paths


def _canon(row: tuple) -> str:
    # Parallel aggregation sums floats in varying order: compare to 12 significant digits.
    return repr(tuple(float(f"{v:.12g}") if isinstance(v, float) else v for v in row))


def fingerprint(con, tables: list[str]) -> dict[str, str]:
    """Order-independent content hash of each table."""
    out = {}
    for t in tables:
        sql = f"select * exclude (as_of) from {t}" if t.startswith("gold") else f"select * from {t}"
        rows = sorted(map(_canon, con.execute(sql).fetchall()))
        out[t] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
    return out


ALL = ["silver.ratings", "silver.movies", *(f"gold.{m}" for m in GOLD_MODELS)]


@pytest.fixture
def loaded(home: Settings, tmp_path: Path):
    movies = tmp_path / "movies.csv"
    movies.write_text(MOVIES_CSV)
    batches = write_batches(tmp_path)
    return home, movies, batches


def test_incremental_equals_full_refresh_and_reruns_change_nothing(loaded) -> None:
    home, movies, batches = loaded
    with write_session(home) as con:
        ingest_file(con, movies, kind="movies")
        for b in batches:
            ingest_file(con, b)
            run_etl(con, home, write_lake=False)
        incremental = fingerprint(con, ALL)
        again = run_etl(con, home, write_lake=False)
        assert again["up_to_date"] and again["new_batches"] == []
        assert fingerprint(con, ALL) == incremental
        run_etl(con, home, full_refresh=True, write_lake=False)
        assert fingerprint(con, ALL) == incremental


def test_placeholders_keep_every_rating(loaded) -> None:
    home, _, batches = loaded
    with write_session(home) as con:
        ingest_file(con, batches[0])
        doc = run_etl(con, home, write_lake=False)
        n_movies = con.execute("select count(distinct movie_id) from bronze.ratings_buffer").fetchall()[0][0]
        assert doc["placeholders"] == n_movies  # no movies file yet: every movie is a placeholder
        assert con.execute("select count(*) from silver.ratings").fetchall()[0][0] == 300
        assert (
            con.execute("select title from silver.movies where is_placeholder limit 1")
            .fetchall()[0][0]
            .startswith("Unknown movie")
        )


def test_dedup_keeps_latest_ingestion(home: Settings, tmp_path: Path) -> None:
    ts = pa.array([1_700_000_000_000_000], pa.timestamp("us"))
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(pa.table({"user_id": [1], "movie_id": [2], "rating": [2.0], "rated_at": ts}), first)
    pq.write_table(pa.table({"user_id": [1], "movie_id": [2], "rating": [4.5], "rated_at": ts}), second)
    with write_session(home) as con:
        ingest_file(con, first)
        run_etl(con, home, write_lake=False)
        ingest_file(con, second)
        run_etl(con, home, write_lake=False)
        assert con.execute("select rating, batch_id from silver.ratings").fetchall() == [(4.5, "b")]
        run_etl(con, home, full_refresh=True, write_lake=False)
        assert con.execute("select rating, batch_id from silver.ratings").fetchall() == [(4.5, "b")]


def test_backfill_by_logical_date_equals_full_refresh(loaded) -> None:
    home, movies, batches = loaded
    with write_session(home) as con:
        ingest_file(con, movies, kind="movies")
        for b in batches:
            ingest_file(con, b)
        for day in (date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31)):
            run_etl(con, home, as_of=logical_end(day), write_lake=False)
        backfilled = fingerprint(con, ALL)
        run_etl(con, home, full_refresh=True, as_of=logical_end(date(2024, 3, 31)), write_lake=False)
        assert fingerprint(con, ALL) == backfilled
        as_of = con.execute("select max(as_of) from gold.movie_kpis").fetchall()[0][0]
        assert as_of == datetime(2024, 3, 31, 23, 59, 59, 999999)


def test_gold_ignores_ratings_after_the_logical_date(loaded) -> None:
    home, _movies, batches = loaded
    with write_session(home) as con:
        for b in batches:
            ingest_file(con, b)
        run_etl(con, home, as_of=logical_end(date(2024, 1, 31)), write_lake=False)
        gold_total = con.execute("select sum(n_ratings) from gold.movie_kpis").fetchall()[0][0]
        jan = con.execute("select count(*) from silver.ratings where rated_at < '2024-02-01'").fetchall()[0][0]
        assert gold_total == jan


def test_silver_gate_stops_and_rolls_back(loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    home, _movies, batches = loaded
    with write_session(home) as con:
        ingest_file(con, batches[0])
        run_etl(con, home, write_lake=False)
        before = fingerprint(con, ["silver.ratings"])
        ingest_file(con, batches[1])
        import cinematch.lakehouse.silver as silver

        # A broken transformation that duplicates new rows must be caught by the unique-key check (incremental
        # runs check the new batches' rows).
        original = silver.build_silver

        def broken(con, full_refresh=False):
            res = original(con, full_refresh)
            con.execute("insert into silver.ratings select * from silver.ratings where batch_id = 'batch_w2' limit 3")
            return res

        monkeypatch.setattr("cinematch.lakehouse.compute.build_silver", broken)
        with pytest.raises(QualityGateFailed, match=r"silver.ratings: check ratings.unique_key .* e\.g\. \("):
            run_etl(con, home, write_lake=False)
        assert fingerprint(con, ["silver.ratings"]) == before
        failed = con.execute("select step, status from ops.pipeline_runs where status = 'failed'").fetchall()
        assert failed == [("silver", "failed")]
        monkeypatch.undo()
        doc = run_etl(con, home, write_lake=False)
        assert doc["new_batches"] == ["batch_w2"]


def test_bronze_gate_catches_audit_mismatch(loaded) -> None:
    home, _, batches = loaded
    with write_session(home) as con:
        ingest_file(con, batches[0])
        con.execute(
            "delete from bronze.ratings_buffer where rowid in (select rowid from bronze.ratings_buffer limit 1)"
        )
        with pytest.raises(QualityGateFailed, match="batch_counts_match_audit"):
            run_etl(con, home, write_lake=False)


def test_lake_is_written_and_readable(loaded) -> None:
    home, movies, batches = loaded
    with write_session(home) as con:
        ingest_file(con, movies, kind="movies")
        ingest_file(con, batches[0])
        doc = run_etl(con, home)
        assert set(doc["lake"]) == {*ALL, *extras.lake_tables()}  # and the extra sources' tables
        glob = str(home.lake_dir / "silver" / "ratings" / "**" / "*.parquet")
        n = con.execute(f"select count(*) from read_parquet('{glob}', hive_partitioning=true)").fetchall()[0][0]
        assert n == 300
        link = home.lake_dir / "silver" / "ratings"
        first = link.resolve()
        ingest_file(con, batches[1])
        run_etl(con, home)
        assert link.resolve() != first and not first.exists()  # swapped, old version removed


def test_incremental_lake_write_reuses_untouched_partitions(loaded) -> None:
    home, movies, batches = loaded
    with write_session(home) as con:
        ingest_file(con, movies, kind="movies")
        ingest_file(con, batches[0])  # January..March 2024
        run_etl(con, home)
        part = home.lake_dir / "silver" / "ratings" / "year=2024"
        before = _inodes(part)
        ingest_file(con, batches[2])  # March..May 2024
        run_etl(con, home)
        after = _inodes(part)
        assert after["month=1"] == before["month=1"]  # untouched: hard-linked, not rewritten
        # touched by new ratings only: the old file is kept and the new rows come in a file of their own
        assert before["month=3"] < after["month=3"] and len(after["month=3"]) == 2
        assert _lake_matches_silver(con, home)
        # a batch that replaces a March rating: March is rewritten whole, so the old rating is gone from the lake
        key = con.execute("select user_id, movie_id, rated_at from silver.ratings where month(rated_at) = 3 limit 1")
        user, movie, rated_at = key.fetchall()[0]
        late = batches[2].parent / "late.parquet"
        ts = pa.array([rated_at], pa.timestamp("us"))
        pq.write_table(pa.table({"user_id": [user], "movie_id": [movie], "rating": [0.5], "rated_at": ts}), late)
        ingest_file(con, late)
        run_etl(con, home)
        rewritten = _inodes(part)
        assert len(rewritten["month=3"]) == 1 and not rewritten["month=3"] & after["month=3"]
        assert rewritten["month=4"] == after["month=4"]
        assert _lake_matches_silver(con, home)


def _inodes(part: Path) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for p in part.glob("month=*/*.parquet"):
        out.setdefault(p.parent.name, set()).add(p.stat().st_ino)
    return out


def _lake_matches_silver(con, home: Settings) -> bool:
    glob = str(home.lake_dir / "silver" / "ratings" / "**" / "*.parquet")
    cols = "user_id, movie_id, rated_at, rating, batch_id"
    lake = con.execute(f"select {cols} from read_parquet('{glob}', hive_partitioning=true) order by all").fetchall()
    return lake == con.execute(f"select {cols} from silver.ratings order by all").fetchall()


def _spy_scoped(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from cinematch.lakehouse import incremental

    calls: list[str] = []
    real = incremental.rebuild

    def spy(con, name, *args):
        written = real(con, name, *args)
        if written is not None:  # None: too much of silver for a scoped rewrite, rebuilt whole
            calls.append(name)
        return written

    monkeypatch.setattr(incremental, "rebuild", spy)
    return calls


def test_incremental_gold_rewrites_only_touched_keys_and_equals_full(
    loaded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, movies, batches = loaded
    with write_session(home) as con:
        ingest_file(con, movies, kind="movies")
        for b in batches:
            ingest_file(con, b)
        run_etl(con, home, write_lake=False)
        old = con.execute(
            "select user_id, movie_id, rated_at from silver.ratings order by rated_at desc, user_id limit 2"
        ).fetchall()
        before = con.execute(
            "select * from gold.genre_analytics where year = 2024 and month = 1 order by genre"
        ).fetchall()
        # a late batch: re-ratings of the two newest keys plus a rating in a new month
        late = tmp_path / "late.parquet"
        ts = pa.array([r[2] for r in old] + [datetime(2024, 5, 2, 12)], pa.timestamp("us"))
        users, films = [r[0] for r in old] + [999], [r[1] for r in old] + [5]
        pq.write_table(pa.table({"user_id": users, "movie_id": films, "rating": [0.5, 5.0, 3.0], "rated_at": ts}), late)
        ingest_file(con, late)
        calls = _spy_scoped(monkeypatch)
        run_etl(con, home, write_lake=False)
        # every model but trending (its windows move with as_of) is rewritten by keys or merged
        assert set(calls) == set(GOLD_MODELS) - {"trending_movies"}
        # January was not touched: its rows are the same apart from as_of
        after = con.execute(
            "select * from gold.genre_analytics where year = 2024 and month = 1 order by genre"
        ).fetchall()
        assert [r[:-1] for r in after] == [r[:-1] for r in before]
        scoped = fingerprint(con, ALL)
        exact = ("gold.movie_kpis", "gold.temporal_trends", "gold.user_genre_masks", "gold.user_month_genre_masks")
        merged = {t: _exact(con, t) for t in exact}
        run_etl(con, home, full_refresh=True, write_lake=False)
        assert fingerprint(con, ALL) == scoped
        # the merges rebuild exact sums: means and standard deviations agree to the last bit
        assert {t: _exact(con, t) for t in merged} == merged


def _exact(con, table: str) -> list[tuple]:
    return sorted(con.execute(f"select * exclude (as_of) from {table}").fetchall(), key=repr)


def test_gold_pinned_to_an_earlier_date_is_rebuilt_whole(loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    home, movies, batches = loaded
    with write_session(home) as con:
        ingest_file(con, movies, kind="movies")
        for b in batches[:2]:
            ingest_file(con, b)
        run_etl(con, home, as_of=logical_end(date(2024, 1, 31)), write_lake=False)
        ingest_file(con, batches[2])
        calls = _spy_scoped(monkeypatch)
        run_etl(con, home, write_lake=False)
        assert calls == []  # gold lacked February: a scoped rewrite would have kept it out
        _assert_full_refresh_changes_nothing(con, home)


def test_incremental_runs_check_new_rows_and_full_refresh_checks_all(loaded) -> None:
    home, movies, batches = loaded
    with write_session(home) as con:
        ingest_file(con, movies, kind="movies")
        ingest_file(con, batches[0])
        run_etl(con, home, write_lake=False)
        ingest_file(con, batches[1])
        doc = run_etl(con, home, write_lake=False)
        scopes = {c["check"]: c["scope"] for c in doc["layers"]["silver"]["checks"]}
        assert scopes["ratings.unique_key"] == "new batches" and scopes["ratings.reconcile_bronze"] == "new batches"
        assert scopes["movies.unique_key"] == "all rows"
        # an old row corrupted behind the pipeline's back is found by the full refresh's checks
        con.execute("update silver.ratings set rating = 7.0 where batch_id = 'batch_w1' and movie_id = 3")
        con.execute("delete from bronze.ratings_buffer where batch_id = 'batch_w1'")  # keep it out of the rebuild
        with pytest.raises(QualityGateFailed, match="rating_range_half_steps"):
            run_etl(con, home, full_refresh=True, write_lake=False)


def test_merges_rebuild_missing_state_from_silver(loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    # as after a Spark-engine run, which drops the state tables: the next merge must not trust a missing state
    from cinematch.lakehouse import incremental

    home, movies, batches = loaded
    with write_session(home) as con:
        ingest_file(con, movies, kind="movies")
        for b in batches[:2]:
            ingest_file(con, b)
        run_etl(con, home, write_lake=False)
        incremental.drop_states(con)
        ingest_file(con, batches[2])
        calls = _spy_scoped(monkeypatch)
        run_etl(con, home, write_lake=False)
        assert "user_engagement" in calls  # merged, with its state rebuilt from silver
        _assert_full_refresh_changes_nothing(con, home, ("gold.user_genre_masks", "gold.user_month_genre_masks"))


def _assert_full_refresh_changes_nothing(con, home: Settings, exact: tuple[str, ...] = ()) -> None:
    def snapshot() -> dict:
        return fingerprint(con, ALL) | {t: _exact(con, t) for t in exact}

    before = snapshot()
    run_etl(con, home, full_refresh=True, write_lake=False)
    assert snapshot() == before


def _daily_batch(path: Path, first: str, last: str, first_user: int) -> Path:
    """One 4-star rating a day at noon from ``first`` to ``last``, each by a new user, movies in turn."""
    days = np.arange(np.datetime64(first), np.datetime64(last) + 1).astype("datetime64[us]") + np.timedelta64(12, "h")
    users = np.arange(first_user, first_user + len(days))
    table = pa.table({"user_id": pa.array(users, pa.int64()), "movie_id": pa.array(users % 69 + 1, pa.int64()),
                      "rating": pa.array(np.full(len(days), 4.0)), "rated_at": pa.array(days, pa.timestamp("us"))})  # fmt: skip
    pq.write_table(table, path)
    return path


_TEMPORAL = "select * from gold.temporal_trends order by year, genre"


def _same_after_full_refresh(con, settings: Settings) -> None:
    """gold.temporal_trends as merged equals a full refresh to the last bit (as_of aside, which a full run moves)."""
    merged = [r[:-1] for r in con.execute(_TEMPORAL).fetchall()]
    run_etl(con, settings, full_refresh=True, write_lake=False)
    assert [r[:-1] for r in con.execute(_TEMPORAL).fetchall()] == merged


@pytest.mark.parametrize("engine", ["duckdb", "postgres"])
def test_same_period_yoy_merges_like_a_full_refresh_across_years(
    engine: str, home: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Weekly batches over a new year, a late batch into the year before and a replaced rating: merged and full
    refresh agree to the bit, and a steady one rating a day compares equal periods (yoy 0, not -0.78)."""
    if engine == "postgres":
        home = Settings(home=home.home, database_url=request.getfixturevalue("pg_url"))
    movies = tmp_path / "movies.csv"
    movies.write_text(MOVIES_CSV)
    ranges = [("2022-01-01", "2023-12-20"), ("2023-12-21", "2024-01-10"), ("2024-01-11", "2024-03-20")]
    batches, user = [], 1
    for i, (first, last) in enumerate(ranges):
        batches.append(_daily_batch(tmp_path / f"steady_{i}.parquet", first, last, user))
        user += (date.fromisoformat(last) - date.fromisoformat(first)).days + 1

    def yoy_2024() -> tuple:
        return con.execute(
            "select n_ratings, n_ratings_prev_period, prev_period_end, yoy_volume_change, yoy_avg_rating_change "
            "from gold.temporal_trends where genre = 'ALL' and year = 2024"
        ).fetchall()[0]

    with write_session(home) as con:
        ingest_file(con, movies, kind="movies")
        ingest_file(con, batches[0])
        run_etl(con, home, write_lake=False)
        calls = _spy_scoped(monkeypatch)
        ingest_file(con, batches[1])  # crosses into 2024: 2023 becomes a whole year, 2024 a first period
        run_etl(con, home, write_lake=False)
        assert yoy_2024() == (10, 10, date(2023, 1, 10), 0.0, 0.0)
        ingest_file(con, batches[2])
        run_etl(con, home, write_lake=False)
        assert "temporal_trends" in calls  # merged, not rebuilt whole
        # 2024 is known to 20 March (day 80 of a leap year): compared with days 1..80 of 2023, to 21 March
        assert yoy_2024() == (80, 80, date(2023, 3, 21), 0.0, 0.0)
        assert con.execute(
            "select yoy_volume_change from gold.temporal_trends where genre = 'ALL' and year = 2023"
        ).fetchall() == [(0.0,)]
        _same_after_full_refresh(con, home)

        # a late batch into the year before: one more 2023 rating (5.0) inside 2024's period changes 2024's row
        late = tmp_path / "late.parquet"
        pq.write_table(pa.table({"user_id": pa.array([90_000], pa.int64()), "movie_id": pa.array([1], pa.int64()),
                                 "rating": pa.array([5.0]),
                                 "rated_at": pa.array([datetime(2023, 2, 15, 8)], pa.timestamp("us"))}), late)  # fmt: skip
        ingest_file(con, late)
        run_etl(con, home, write_lake=False)
        n, n_prev, end, volume, avg = yoy_2024()
        assert (n, n_prev, end) == (80, 81, date(2023, 3, 21))
        assert volume == pytest.approx(80 / 81 - 1) and avg == pytest.approx(4.0 - (80 * 4.0 + 5.0) / 81)
        _same_after_full_refresh(con, home)

        # a re-rating of the newest rating (same key and rated_at): silver replaces it, the merge subtracts it
        replaced = con.execute(
            "select user_id, movie_id, rated_at from silver.ratings order by rated_at desc limit 1"
        ).fetchall()[0]
        rerate = tmp_path / "rerate.parquet"
        pq.write_table(pa.table({"user_id": pa.array([replaced[0]], pa.int64()),
                                 "movie_id": pa.array([replaced[1]], pa.int64()), "rating": pa.array([2.0]),
                                 "rated_at": pa.array([replaced[2]], pa.timestamp("us"))}), rerate)  # fmt: skip
        ingest_file(con, rerate)
        run_etl(con, home, write_lake=False)
        n, n_prev, end, volume, avg = yoy_2024()
        assert (n, n_prev, end) == (80, 81, date(2023, 3, 21))
        assert avg == pytest.approx((79 * 4.0 + 2.0) / 80 - (80 * 4.0 + 5.0) / 81)
        if engine == "duckdb":
            _assert_full_refresh_changes_nothing(con, home, ("gold.temporal_trends",))
        else:
            _same_after_full_refresh(con, home)


def test_gold_built_before_the_new_columns_is_rebuilt_whole(loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    """A warehouse built before gold.temporal_trends had its previous-period columns: the next incremental run
    cannot merge into the old table (nothing stored to merge with), so it rebuilds gold whole."""
    home, movies, batches = loaded
    with write_session(home) as con:
        ingest_file(con, movies, kind="movies")
        ingest_file(con, batches[0])
        run_etl(con, home, write_lake=False)
        for column in ("prev_period_end", "n_ratings_prev_period", "avg_rating_prev_period"):
            con.execute(f"alter table gold.temporal_trends drop column {column}")
        con.execute("alter table gold.trending_movies drop column is_new")
        ingest_file(con, batches[1])
        calls = _spy_scoped(monkeypatch)
        run_etl(con, home, write_lake=False)
        assert calls == []  # rebuilt whole, not merged into the old tables
        columns = {r[0] for r in con.execute("select * from gold.temporal_trends limit 0").description}
        assert {"prev_period_end", "n_ratings_prev_period", "avg_rating_prev_period"} <= columns
        _assert_full_refresh_changes_nothing(con, home, ("gold.temporal_trends",))
