"""serving/early_views.py: user views written beside a training give the views file a plain publish writes, and a
step that fails before (or during) its publish leaves no file and the served views unchanged."""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import pytest
from tests.served import build_home

from cinematch.core.settings import Settings
from cinematch.recommender.training import params_from_settings, train_warehouse
from cinematch.serving import publish as publish_module
from cinematch.serving.early_views import early_user_views
from cinematch.serving.layout import VIEW_TABLES, current_views
from cinematch.serving.publish import publish
from cinematch.storage.warehouse import write_session

# columns that name the publication itself (its time and file) or when the lists were made (the plain publish
# makes them again), not what it serves
_OWN = {"meta": ("views_version", "published_at", "generated_at"), "recommendations": ("generated_at",)}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return build_home(tmp_path_factory.mktemp("early"))


def _tables(path: Path) -> dict[str, list[tuple[object, ...]]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        out = {}
        for table in VIEW_TABLES:
            columns = [c for (c,) in con.execute(
                "select column_name from information_schema.columns where table_name = ? order by ordinal_position",
                [table]).fetchall() if c not in _OWN.get(table, ())]  # fmt: skip
            out[table] = con.execute(f"select {', '.join(columns)} from {table} order by all").fetchall()
        return out
    finally:
        con.close()


def _views_files(settings: Settings) -> set[str]:
    return {p.name for p in settings.serving_dir.glob("views_*.duckdb*")}


def test_user_views_written_beside_a_training_equal_a_plain_publish(home: Settings) -> None:
    with write_session(home, "test") as con:
        with early_user_views(con, home) as early:
            assert early is not None and early.path.exists()
            # a training in the meantime: it reads silver, writes the registry, the lists and model files
            run = train_warehouse(con, home, params_from_settings(home, rank=8, iterations=5))
            beside = publish(con, home, lists_current=bool(run["promoted"]), early=early)
        plain = publish(con, home)
    assert beside.path == str(early.path) and beside.path != plain.path
    assert list(beside.counts) == list(plain.counts)  # the same tables, in the same order
    assert beside.counts == plain.counts and beside.counts["user_ratings"] > 0
    assert _tables(Path(beside.path)) == _tables(Path(plain.path))
    assert not any(t.name == "cinematch-user-views" for t in threading.enumerate())


def test_a_step_that_fails_before_its_publish_leaves_no_file(home: Settings) -> None:
    with write_session(home, "test") as con:
        publish(con, home)
        served, files = current_views(home), _views_files(home)
        with pytest.raises(RuntimeError, match="the training failed"), early_user_views(con, home) as early:
            assert early is not None
            raise RuntimeError("the training failed")
        assert current_views(home) == served and _views_files(home) == files
        # the alias is free again: the next step starts its own file
        with early_user_views(con, home) as again:
            assert again is not None
            publish(con, home, early=again)
    assert current_views(home) == again.path


def test_a_publish_that_fails_removes_the_early_file(home: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    real = publish_module.view_sql

    def broken(*args: object, **kwargs: object) -> dict[str, tuple[str, list[object]]]:
        views = real(*args, **kwargs)  # type: ignore[arg-type]
        views["trending"] = ("select * from no_such_table", [])
        return views

    with write_session(home, "test") as con:
        publish(con, home)
        served, files = current_views(home), _views_files(home)
        monkeypatch.setattr(publish_module, "view_sql", broken)
        with pytest.raises(duckdb.Error, match="no_such_table"), early_user_views(con, home) as early:
            publish(con, home, early=early)
        assert current_views(home) == served and _views_files(home) == files
        monkeypatch.setattr(publish_module, "view_sql", real)
        assert publish(con, home).counts["user_summary"] > 0
