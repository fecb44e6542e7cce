"""`publish`: the views file's tables, the CURRENT pointer, cleanup, and publishing without a champion."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from tests.served import DRIFT_SCORES, build_home

from cinematch.core.errors import CineMatchError
from cinematch.core.settings import Settings
from cinematch.recommender import registry
from cinematch.serving.layout import CURRENT, VIEW_TABLES, current_views
from cinematch.serving.publish import publish
from cinematch.serving.read import ViewStore
from cinematch.storage.warehouse import write_session


def test_views_file_holds_every_table(served_home: Settings) -> None:
    path = current_views(served_home)
    assert path is not None and path.is_file() and not Path(f"{path}.wal").exists()
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
        assert tables >= set(VIEW_TABLES)
        meta = con.execute("select model_version, model_batch_ids, n_users from meta").fetchall()[0]
        recs = con.execute("select count(*), count(distinct user_id), max(rank), min(length(title)) "
                           "from recommendations").fetchall()[0]  # fmt: skip
        windows = {w for (w,) in con.execute("select distinct window_label from trending").fetchall()}
        dist = con.execute("select sum(reference_share), sum(latest_share), count(*) from rating_distribution")
        dist = dist.fetchall()[0]
        drift = [r[0] for r in con.execute("select score from drift order by checked_at").fetchall()]
        fallback = con.execute("select min(n_ratings), min(min_ratings), count(*) from fallback").fetchall()[0]
    finally:
        con.close()
    with write_session(served_home) as wh:
        champ = registry.champion(wh)
        per_user = wh.execute("select count(distinct user_id) from serving.recommendations").fetchall()[0][0]
    assert champ is not None and meta[0] == champ["version"]
    assert meta[2] == per_user == recs[1] and recs[0] == per_user * 10 and recs[2] == 10 and recs[3] > 0
    assert windows <= {"7d", "30d", "90d"} and windows
    assert dist[0] == pytest.approx(1.0) and dist[1] == pytest.approx(1.0) and dist[2] == 10
    assert drift == list(DRIFT_SCORES)
    # fallback: only movies with at least min_ratings ratings, ranked by bayesian rating
    assert fallback[0] >= fallback[1] >= 1 and fallback[2] > 0


def test_publish_swaps_current_and_keeps_one_previous(served_home: Settings) -> None:
    first = current_views(served_home)
    docs = []
    with write_session(served_home, "publish") as con:
        for _ in range(3):
            docs.append(publish(con, served_home))
    files = sorted(p.name for p in served_home.serving_dir.glob("views_*"))
    assert files == sorted([Path(docs[-1]["path"]).name, Path(docs[-2]["path"]).name])
    assert (served_home.serving_dir / CURRENT).read_text().strip() == Path(docs[-1]["path"]).name
    assert docs[0]["previous"] == str(first) and docs[-1]["previous"] == docs[-2]["path"]
    assert not list(served_home.serving_dir.glob(".*tmp"))


def test_view_store_follows_current(served_home: Settings) -> None:
    store = ViewStore(served_home, interval=0.0)
    before = store.get()
    assert before is not None and before.path == current_views(served_home)
    with write_session(served_home, "publish") as con:
        doc = publish(con, served_home)
    after = store.get()
    assert after is not None and str(after.path) == doc["path"] and after is not before
    # the old snapshot keeps working for requests that started on it
    assert before.user_recommendations(1, 3) == after.user_recommendations(1, 3)


def test_publish_without_champion_serves_fallback_only(tmp_path: Path) -> None:
    settings = build_home(tmp_path, train=False)
    with write_session(settings, "publish") as con:
        doc = publish(con, settings)
    assert doc["model_version"] is None and doc["counts"]["recommendations"] == 0
    assert doc["counts"]["fallback"] > 0 and doc["counts"]["models"] == 0
    views = ViewStore(settings).get()
    assert views is not None and views.user_recommendations(1, 10) == [] and views.fallback


def test_publish_needs_the_lakehouse(home: Settings) -> None:
    with write_session(home, "publish") as con, pytest.raises(CineMatchError, match="cinematch etl"):
        publish(con, home)
    assert not home.serving_dir.exists() or not list(home.serving_dir.iterdir())


def test_publish_with_one_batch_and_no_model(home: Settings, tmp_path: Path) -> None:
    # nothing to compare the latest batch with yet: the reference set is empty, publish still works
    import numpy as np
    import pyarrow.parquet as pq
    from tests.conftest import make_ratings

    from cinematch.ingest.bronze import ingest_file
    from cinematch.lakehouse.etl import run_etl

    pq.write_table(make_ratings(np.random.default_rng(1), n=200, users=20, movies=30), tmp_path / "only.parquet")
    with write_session(home, "publish") as con:
        ingest_file(con, tmp_path / "only.parquet")
        run_etl(con, home, write_lake=False)
        doc = publish(con, home)
    assert doc["model_version"] is None and doc["counts"]["recommendations"] == 0
    assert doc["counts"]["trending"] > 0 and doc["counts"]["genres"] > 0


def test_publish_with_lists_current_keeps_the_champions_lists_and_rebuilds_any_others(
    served_home: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A training that promoted has just written the lists: publish(lists_current=True) does not rebuild them,
    unless serving.recommendations does not hold the champion's lists (then they are rebuilt as always)."""
    from cinematch.serving import publish as publish_module

    calls: list[str] = []
    real = publish_module.write_recommendations
    monkeypatch.setattr(publish_module, "write_recommendations",
                        lambda con, settings, model, version: calls.append(version) or real(con, settings, model, version))  # fmt: skip
    read = "select user_id, rank, movie_id, model_version from serving.recommendations order by user_id, rank"
    with write_session(served_home, "publish") as con:
        before = con.execute(read).fetchall()
        publish(con, served_home, lists_current=True)
        assert calls == [] and con.execute(read).fetchall() == before
        con.execute("update serving.recommendations set model_version = 'version_gone'")
        publish(con, served_home, lists_current=True)
        assert calls == [before[0][3]] and con.execute(read).fetchall() == before
        publish(con, served_home)
        assert len(calls) == 2
