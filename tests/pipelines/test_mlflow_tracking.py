"""MLflow tracking and registry against a real `mlflow server` on loopback (SQLite backend, file artifacts):
training runs logged and registered, the champion alias following promote and rollback, the pyfunc loaded
back, drift runs, an outage that a training survives and `models sync-mlflow` catches up, replays kept out."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import require
from tests.mlflow_server import MlflowServer, free_port, mlflow_bin

from cinematch.core.settings import Settings
from cinematch.datasets.generate import generate_tables
from cinematch.datasets.generate_config import GenerateConfig
from cinematch.ingest.bronze import ingest_file
from cinematch.lakehouse.etl import run_etl
from cinematch.pipelines.engine import train_warehouse
from cinematch.recommender import registry
from cinematch.recommender.training import params_from_settings
from cinematch.storage.warehouse import write_session

SMALL = {"rank": 8, "iterations": 4}


def _mlflow_installed() -> bool:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return False
    return mlflow_bin() is not None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    require(_mlflow_installed(), "mlflow (pip install -e '.[mlflow]')")
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def batches(tmp_path: Path) -> list[Path]:
    tables = generate_tables(GenerateConfig(users=250, movies=200, ratings=6000, weeks=1, batch_ratings=2500, seed=3))
    paths = [tmp_path / "batch_w0.parquet", tmp_path / "batch_w1.parquet"]
    pq.write_table(tables["ratings"], paths[0])
    pq.write_table(tables["batch_w1"], paths[1])
    return paths


def home_with(tmp_path: Path, uri: str | None, batch: Path) -> Settings:
    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=uri, mlflow_timeout_seconds=5.0)
    with write_session(settings) as con:
        ingest_file(con, batch)
        run_etl(con, settings, write_lake=False)
    return settings


def train(settings: Settings) -> str:
    with write_session(settings) as con:
        return train_warehouse(con, settings, params_from_settings(settings, **SMALL)).version


def client_of(uri: str):
    from cinematch.pipelines import mlflow_client

    return mlflow_client.connect(Settings(mlflow_tracking_uri=uri))


def registered(uri: str) -> dict[str, list[str]]:
    """CineMatch version -> every MLflow model version number carrying it (duplicates would show here)."""
    out: dict[str, list[str]] = {}
    for mv in client_of(uri).search_model_versions("name = 'cinematch'", max_results=1000):
        out.setdefault(mv.tags.get("cinematch_version"), []).append(mv.version)
    return out


def champion_alias(uri: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return client_of(uri).get_model_version_by_alias("cinematch", "champion").tags["cinematch_version"]
    except MlflowException:
        return None


def run_of(uri: str, version: str):
    client = client_of(uri)
    exp = client.get_experiment_by_name("cinematch-training")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.cinematch_version = '{version}'")
    assert len(runs) == 1, f"{len(runs)} runs for {version}"
    return runs[0]


def test_training_runs_are_logged_registered_and_the_alias_follows(server, tmp_path, batches) -> None:
    from cinematch.pipelines.champion import promote_version, rollback_champion

    settings = home_with(tmp_path, server.uri, batches[0])
    first = train(settings)
    with write_session(settings) as con:
        ingest_file(con, batches[1])
        run_etl(con, settings, write_lake=False)
    second = train(settings)
    meta = registry.load_metadata(settings, second)
    run = run_of(server.uri, second)
    assert run.info.status == "FINISHED"
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["als.rank"] == "8" and params["als.iterations"] == "4" and params["ranking.model"]
    assert params["split.rule"] == meta["split"]["rule"]
    for key in ("rmse", "mae", "precision_at_10", "ndcg_at_10", "map_at_10", "most_popular.ndcg_at_10"):
        assert key in metrics, key
    assert metrics["rmse"] == pytest.approx(meta["metrics"]["rmse"])
    assert tags["data_checksum"] == meta["data_checksum"] and tags["batch_ids"] == "batch_w0,batch_w1"
    client = client_of(server.uri)
    assert {f.path for f in client.list_artifacts(run.info.run_id)} == {"model"}  # the files uploaded once
    files = {f.path for f in client.list_artifacts(run.info.run_id, f"model/artifacts/{second}")}
    assert f"model/artifacts/{second}/als_model.json" in files and f"model/artifacts/{second}/metadata.json" in files
    assert "MLmodel" in {Path(f.path).name for f in client.list_artifacts(run.info.run_id, "model")}
    versions = registered(server.uri)
    assert len(versions[first]) == 1 and len(versions[second]) == 1
    with write_session(settings) as con:
        champ = registry.champion(con).version
        assert champion_alias(server.uri) == champ
        other = first if champ == second else second
        promote_version(con, settings, other)
    assert champion_alias(server.uri) == other
    with write_session(settings) as con:
        rollback_champion(con, settings)
    assert champion_alias(server.uri) == champ


def test_the_registered_pyfunc_gives_top_n_and_ratings(server, tmp_path, batches) -> None:
    import mlflow.pyfunc
    import pandas as pd

    from cinematch.recommender.interactions import histories
    from cinematch.recommender.training_set import ratings_of, stable_split

    settings = home_with(tmp_path, server.uri, batches[0])
    version = train(settings)
    number = registered(server.uri)[version][0]
    model = mlflow.pyfunc.load_model(f"models:/cinematch/{number}")
    als, ranker = registry.load_model(settings, version), registry.load_ranker(settings, version)
    users = als.user_ids[:20]
    movies = als.item_ids[::7][:20]
    rated = model.predict(pd.DataFrame({"user_id": users, "movie_id": movies}))
    expected, fallback = als.predict(users, movies)
    np.testing.assert_allclose(rated["predicted_rating"].to_numpy(), expected)
    assert rated["fallback"].tolist() == fallback.tolist()

    lists = model.predict(pd.DataFrame({"user_id": users}), params={"n": 5})
    assert list(lists.columns) == ["user_id", "rank", "movie_id", "score"] and len(lists) == 5 * len(users)
    with write_session(settings) as con:
        data = ratings_of(con, registry.champion(con).batch_ids)
    train_split, _ = stable_split(data)
    # the pyfunc's history is the training split, which movies each user rated (ratings not kept)
    unweighted = train_split.set_column(2, "rating", pa.array(np.ones(train_split.num_rows)))
    ids, _, _ = ranker.recommend(histories(unweighted, ranker.item_ids, users), users, 5, because=False)
    assert lists["movie_id"].to_numpy().reshape(len(users), 5).tolist() == ids.tolist()
    seen = {
        (u, m)
        for u, m in zip(
            train_split.column("user_id").to_pylist(), train_split.column("movie_id").to_pylist(), strict=True
        )
    }
    assert not any((u, m) in seen for u, m in zip(lists["user_id"], lists["movie_id"], strict=True))


def test_drift_checks_are_runs_of_their_own_experiment(server, tmp_path, batches) -> None:
    from cinematch.pipelines.retrain import drift_and_retrain

    settings = home_with(tmp_path, server.uri, batches[0])
    train(settings)
    with write_session(settings) as con:
        ingest_file(con, batches[1])
        run_etl(con, settings, write_lake=False)
        cycle = drift_and_retrain(con, settings)
    client = client_of(server.uri)
    exp = client.get_experiment_by_name("cinematch-drift")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.report_id = '{cycle.drift['report_id']}'")
    assert len(runs) == 1
    assert runs[0].data.tags["decision"] == cycle.drift["decision"]
    assert runs[0].data.metrics["score"] == pytest.approx(cycle.drift["score"])


def sync_cli(home: Path, uri: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CINEMATCH_HOME": str(home)}
    env.pop("CINEMATCH_MLFLOW_TRACKING_URI", None)
    if uri is not None:
        env["CINEMATCH_MLFLOW_TRACKING_URI"] = uri
    return subprocess.run([sys.executable, "-m", "cinematch", "models", "sync-mlflow", *args], capture_output=True,
                          text=True, env=env, timeout=300)  # fmt: skip


def test_an_outage_costs_a_warning_then_sync_catches_up(server, tmp_path, batches, caplog) -> None:
    down = f"http://cm:hunter2secret@127.0.0.1:{free_port()}"  # nothing listens there; credentials never shown
    settings = home_with(tmp_path, down, batches[0])
    caplog.set_level(logging.WARNING, logger="cinematch")
    t0 = time.perf_counter()
    version = train(settings)  # the training succeeds: CineMatch's registry is the source of truth
    seconds = time.perf_counter() - t0
    warnings = [r for r in caplog.records if "mlflow_unavailable" in r.getMessage()]
    assert len(warnings) == 1 and "hunter2secret" not in caplog.text and "cm:***@" in warnings[0].getMessage()
    pending = json.loads((settings.home_dir / "mlflow" / "pending.json").read_text())
    assert pending["versions"] == [version] and pending["alias"]
    assert version not in registered(server.uri)
    assert seconds < 60  # the whole small training; the mirror's share is checked below

    from cinematch.pipelines import mlflow_sync

    t0 = time.perf_counter()
    mlflow_sync.after_champion_change(settings, version)  # alone: no training to overlap with
    assert time.perf_counter() - t0 < 5.5

    refused = sync_cli(settings.home, down, "--json")
    assert refused.returncode == 2 and refused.stdout == "" and len(refused.stderr.strip().splitlines()) == 1
    assert "unreachable" in refused.stderr and "hunter2secret" not in refused.stderr
    off = sync_cli(settings.home, None)
    assert off.returncode == 2 and "CINEMATCH_MLFLOW_TRACKING_URI" in off.stderr

    done = sync_cli(settings.home, server.uri, "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["registered"] == [version] and doc["champion"] == version and doc["champion_mlflow_version"]
    assert champion_alias(server.uri) == version and not (settings.home_dir / "mlflow" / "pending.json").exists()
    again = sync_cli(settings.home, server.uri)
    assert again.returncode == 0 and "0 version(s) registered, 1 already there" in again.stdout
    assert len(registered(server.uri)[version]) == 1 and len(run_of(server.uri, version).info.run_id) > 0


def test_mlflow_is_never_imported_when_off(tmp_path, batches) -> None:
    settings = home_with(tmp_path, None, batches[0])
    script = (
        "import sys; from cinematch.core.settings import Settings; from cinematch.pipelines.engine import "
        "train_warehouse; from cinematch.recommender.training import params_from_settings; "
        "from cinematch.storage.warehouse import write_session\n"
        f"s = Settings(home={str(settings.home)!r})\n"
        "with write_session(s) as con: train_warehouse(con, s, params_from_settings(s, rank=4, iterations=2))\n"
        "print('mlflow' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "CINEMATCH_MLFLOW_TRACKING_URI"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_a_replay_never_logs_to_mlflow_nor_moves_the_alias(server, tmp_path) -> None:
    from cinematch.pipelines.replay import scratch_settings
    from cinematch.pipelines.replay_policy import parse_policies
    from cinematch.pipelines.replay_run import run_replay

    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=server.uri)
    assert scratch_settings(settings, tmp_path / "scratch").mlflow_tracking_uri is None
    tables = generate_tables(GenerateConfig(users=200, movies=150, ratings=4000, weeks=2, batch_ratings=600, seed=5))
    history = pa.concat_tables([tables[k].select(["user_id", "movie_id", "rating", "rated_at"])
                                for k in ("ratings", "batch_w1", "batch_w2")])  # fmt: skip
    pq.write_table(history, tmp_path / "history.parquet")
    first = min(tables["batch_w1"].column("rated_at").to_pylist())
    before_alias, before = champion_alias(server.uri), registered(server.uri)
    run = run_replay(settings, tmp_path / "history.parquet", None, datetime.combine(first.date(), datetime.min.time()),
                     "7d", parse_policies(("always",), compare=False), report=False, workers=1)  # fmt: skip
    replay_versions = {p["new_version"] for p in run["periods"] if p["new_version"]}
    assert replay_versions  # the replay did train
    assert registered(server.uri) == before and champion_alias(server.uri) == before_alias
    client = client_of(server.uri)
    exp = client.get_experiment_by_name("cinematch-training")
    tagged = client.search_runs([exp.experiment_id]) if exp else []
    assert not replay_versions & {r.data.tags.get("cinematch_version") for r in tagged}


def test_a_server_that_never_answers_costs_the_timeout_and_one_warning(tmp_path, caplog) -> None:
    """A blackholed MLflow (connections accepted, never answered): the wall-clock guard gives up on time."""
    import socket

    require(_mlflow_installed(), "mlflow (pip install -e '.[mlflow]')")
    from cinematch.pipelines import mlflow_sync

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshakes; nobody ever reads or answers
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=uri, mlflow_timeout_seconds=2.0)
        caplog.set_level(logging.WARNING, logger="cinematch")
        t0 = time.perf_counter()
        mlflow_sync.after_champion_change(settings, "version_20260101T000000_000000Z")
        seconds = time.perf_counter() - t0
    assert 1.5 < seconds < 3.5
    warnings = [r.getMessage() for r in caplog.records if "mlflow_unavailable" in r.getMessage()]
    # the guard's deadline or the request's own timeout (both 2 s here), whichever fires first
    assert len(warnings) == 1 and ("did not answer within 2 s" in warnings[0] or "ReadTimeout" in warnings[0])
    assert json.loads((settings.home_dir / "mlflow" / "pending.json").read_text())["alias"] is True


def test_cli_train_json_is_one_document_and_shows_no_credentials(server, tmp_path, batches) -> None:
    settings = home_with(tmp_path, None, batches[0])
    uri = server.uri.replace("http://", "http://cm:pw1234secret@")  # basic auth the open server ignores
    env = {**os.environ, "CINEMATCH_HOME": str(settings.home), "CINEMATCH_MLFLOW_TRACKING_URI": uri}
    out = subprocess.run([sys.executable, "-m", "cinematch", "train", "--json", "--rank", "4", "--iterations", "2"],
                         capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)  # MLflow's run links would land on stdout: they are suppressed
    assert len(registered(server.uri)[doc["version"]]) == 1 and champion_alias(server.uri) == doc["version"]
    assert "pw1234secret" not in out.stdout + out.stderr


def test_saving_the_pyfunc_skips_mlflows_scan_of_every_installed_package(tmp_path, monkeypatch) -> None:
    """The model is saved with the pinned requirements, without MLflow's scan of all installed distributions
    (made to fail here), and MLflow's module map is left unset afterwards for anything else in the process."""
    require(_mlflow_installed(), "mlflow (pip install -e '.[mlflow]')")
    import importlib_metadata
    from mlflow.utils import requirements_utils

    from cinematch.pipelines.mlflow_client import requirements
    from cinematch.pipelines.mlflow_log import save_pyfunc

    scans: list[int] = []

    def scan() -> dict[str, list[str]]:  # MLflow swallows a failing check: count the scans instead
        scans.append(1)
        return {}

    monkeypatch.setattr(importlib_metadata, "packages_distributions", scan)
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    monkeypatch.setattr(requirements_utils, "_PACKAGES_TO_MODULES", None)
    folder = tmp_path / "version_x"
    folder.mkdir()
    (folder / "metadata.json").write_text("{}")
    save_pyfunc(tmp_path / "model", folder)
    assert scans == []
    pins = (tmp_path / "model" / "requirements.txt").read_text().split()
    assert set(requirements()) <= set(pins) and "cinematch" in " ".join(pins)
    assert (tmp_path / "model" / "artifacts" / "version_x" / "metadata.json").is_file()
    assert requirements_utils._MODULES_TO_PACKAGES is None and requirements_utils._PACKAGES_TO_MODULES is None
    requirements_utils.warn_dependency_requirement_mismatches(requirements())  # outside the save: as usual
    assert scans == [1]
