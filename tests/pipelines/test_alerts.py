"""Alert webhook: event types, secret scrubbing, a broken webhook never fails the work, and the CLI posts too."""

from __future__ import annotations

import json
import time

import duckdb
import pytest
from tests.webhook_recorder import WebhookRecorder

from cinematch.core.errors import BadInput, QualityGateFailed
from cinematch.core.settings import Settings
from cinematch.pipelines import alerts

DB_PASSWORD = "s3cr@t pw/x"  # needs percent-encoding in a URL: scrubbed raw and encoded
DB_URL = "postgresql://cine:s3cr%40t%20pw%2Fx@db.example.com:5432/cinematch"
API_KEY = "api-key-0123456789"
TMDB_KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch):
    with WebhookRecorder() as recorder:
        monkeypatch.setenv("CINEMATCH_ALERT_WEBHOOK", recorder.url)
        monkeypatch.delenv("CINEMATCH_ALERT_WEBHOOK_URL", raising=False)
        yield recorder


@pytest.mark.parametrize("variable", ["CINEMATCH_ALERT_WEBHOOK", "CINEMATCH_ALERT_WEBHOOK_URL"])
def test_both_variable_names_configure_the_webhook(variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CINEMATCH_ALERT_WEBHOOK", "CINEMATCH_ALERT_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    with WebhookRecorder() as recorder:
        monkeypatch.setenv(variable, recorder.url)
        assert alerts.post(alerts.FAILURE, "boom", "cli") is True
    assert recorder.received[0]["event"] == "failure" and recorder.received[0]["status"] == "failed"
    assert recorder.received[0]["source"] == "cli" and recorder.received[0]["text"] == "boom"


def test_no_webhook_posts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CINEMATCH_ALERT_WEBHOOK", "CINEMATCH_ALERT_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    assert alerts.post(alerts.FAILURE, "nobody listens", "cli") is False


def test_each_event_has_its_own_type(hook: WebhookRecorder) -> None:
    promoted = {"version": "version_2", "rmse": 0.91, "promoted": True, "champion_version": "version_2",
                "promotion": {"decision": "promoted", "reason": "rmse 0.91 <= champion 0.95"}}  # fmt: skip
    refused = {"version": "version_3", "rmse": 0.99, "promoted": False, "champion_version": "version_2",
               "promotion": "rejected"}  # an Airflow reference carries the decision only  # fmt: skip
    assert alerts.post_training(promoted, "simulate") and alerts.post_training(refused, "airflow")
    assert alerts.post_training({"version": "version_2", "skipped": True}, "airflow") is False
    assert alerts.post_training(None, "airflow") is False
    retrain = {"decision": "retrain", "should_retrain": True, "score": 1.7, "report_id": "r1", "batch_ids": ["w3"]}
    assert alerts.post_drift(retrain, "cli") is True
    assert alerts.post_drift({**retrain, "decision": "warning", "should_retrain": False}, "cli") is False
    assert alerts.post_exception(QualityGateFailed("gold.movie_kpis.unique_key failed"), "cli", "cinematch etl")
    assert alerts.post_exception(BadInput("no such file"), "cli", "cinematch ingest")
    events = hook.events()
    assert events == ["champion_promoted", "promotion_refused", "retrain_decided", "gate_failed", "failure"]
    assert [r["status"] for r in hook.received] == ["info", "info", "info", "failed", "failed"]
    assert hook.received[0]["version"] == "version_2" and "promoted to champion" in hook.received[0]["text"]
    assert hook.received[1]["decision"] == "rejected" and "not promoted" in hook.received[1]["text"]
    assert hook.received[2]["report_id"] == "r1" and hook.received[2]["batch_ids"] == ["w3"]
    assert hook.received[3]["where"] == "cinematch etl" and hook.received[3]["error_type"] == "QualityGateFailed"
    with pytest.raises(ValueError, match="unknown alert event"):
        alerts.post("retrain", "typo", "cli")


def test_an_exception_is_posted_once(hook: WebhookRecorder) -> None:
    """simulate posts its failure; the CLI around it must not post the same exception again."""
    exc = QualityGateFailed("silver.ratings.unique_key")
    assert alerts.post_exception(exc, "simulate", "simulate week 2") is True
    assert alerts.post_exception(exc, "cli", "cinematch simulate") is False
    assert hook.events() == ["gate_failed"] and hook.received[0]["where"] == "simulate week 2"


def test_no_secret_reaches_the_payload(hook: WebhookRecorder, tmp_path) -> None:
    settings = Settings(home=tmp_path, database_url=DB_URL, api_key=API_KEY, tmdb_api_key=TMDB_KEY,
                        CINEMATCH_ALERT_WEBHOOK=hook.url)  # fmt: skip
    leaky = (f"could not connect to {DB_URL} (password {DB_PASSWORD}); GET /movie/1?api_key={TMDB_KEY} "
             f"with X-API-Key: {API_KEY} from postgresql://other:hunter22@h/db")  # fmt: skip
    assert alerts.post(alerts.FAILURE, leaky, "cli", settings, nested={"error": [leaky, {"url": DB_URL}]})
    exc = RuntimeError(leaky)
    assert alerts.post_exception(exc, "cli", "cinematch etl", settings)
    raw = b"".join(hook.raw).decode()
    for secret in (DB_PASSWORD, "s3cr%40t%20pw%2Fx", "s3cr@t", API_KEY, TMDB_KEY, "hunter22"):
        assert secret not in raw, secret
    assert "could not connect to *** (password ***)" in raw  # the message stays readable around the holes


def test_a_broken_webhook_is_logged_never_fatal(caplog, monkeypatch: pytest.MonkeyPatch) -> None:
    with WebhookRecorder(status=500) as recorder:
        monkeypatch.setenv("CINEMATCH_ALERT_WEBHOOK", recorder.url + "?token=hook-secret")
        assert alerts.post(alerts.FAILURE, "boom", "cli") is False
    assert "event=alert_failed" in caplog.text and "error=HTTPError" in caplog.text
    assert "hook-secret" not in caplog.text  # the webhook URL (a token in it) is never logged
    monkeypatch.setenv("CINEMATCH_ALERT_WEBHOOK", "http://127.0.0.1:9/nothing-listens")
    assert alerts.post(alerts.FAILURE, "boom", "cli") is False
    monkeypatch.setenv("CINEMATCH_ALERT_WEBHOOK", "not a url")
    assert alerts.post(alerts.FAILURE, "boom", "cli") is False


def test_a_slow_webhook_is_cut_short(monkeypatch: pytest.MonkeyPatch) -> None:
    with WebhookRecorder(delay=10) as recorder:
        monkeypatch.setenv("CINEMATCH_ALERT_WEBHOOK", recorder.url)
        started = time.monotonic()
        assert alerts.post(alerts.FAILURE, "boom", "cli", timeout=0.5) is False
        assert time.monotonic() - started < 3
        started = time.monotonic()
        assert alerts.post(alerts.FAILURE, "boom", "cli") is False  # the default bound
        assert time.monotonic() - started < alerts.TIMEOUT_SECONDS + 2


def test_cli_failures_are_posted(cli, hook: WebhookRecorder, home: Settings, tiny_ratings, tmp_path) -> None:
    """Regression: only Airflow posted alerts. A refused file is a failure; a failed gate is gate_failed."""
    res = cli("ingest", str(tmp_path / "no-such-file.csv"))
    assert res.code == 2
    assert hook.events() == ["failure"]
    alert = hook.received[0]
    assert alert["source"] == "cli" and alert["where"] == "cinematch ingest" and alert["exit_code"] == 2
    assert "no-such-file.csv" in alert["text"]

    assert cli("ingest", str(tiny_ratings)).code == 0
    assert cli("etl", "--no-lake").code == 0
    assert hook.events() == ["failure"]  # success posts nothing from the CLI
    # an old row corrupted behind the pipeline's back: the full refresh's silver gate stops the run
    con = duckdb.connect(str(home.duckdb_path))
    con.execute("update silver.ratings set rating = 7.0 where movie_id = (select min(movie_id) from silver.ratings)")
    con.execute("delete from bronze.ratings_buffer")  # keep it out of the rebuild
    con.close()
    res = cli("etl", "--full-refresh", "--no-lake")
    assert res.code == 1, res.stderr
    assert hook.events() == ["failure", "gate_failed"]
    gate = hook.received[1]
    assert gate["where"] == "cinematch etl" and gate["error_type"] == "QualityGateFailed"
    assert json.loads(hook.raw[1])["status"] == "failed"


def test_cli_training_posts_its_promotion(cli, hook: WebhookRecorder, tiny_ratings) -> None:
    """`cinematch train` posts the outcome of the new version, as the training DAGs and simulate do."""
    assert cli("ingest", str(tiny_ratings)).code == 0
    assert cli("etl", "--no-lake").code == 0
    res = cli("train", "--json", "--rank", "4", "--iterations", "2")
    assert res.code == 0, res.stderr
    assert hook.events() == ["champion_promoted"]
    alert = hook.received[0]
    assert alert["source"] == "cli" and alert["version"] == json.loads(res.stdout)["version"]
