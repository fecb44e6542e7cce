"""The main job: the default 3-week story, and that the warehouse tells the same story as the narrative."""

from __future__ import annotations

import pytest
from tests.webhook_recorder import WebhookRecorder

from cinematch.cli.app import main
from cinematch.core.errors import QualityGateFailed
from cinematch.core.settings import Settings
from cinematch.pipelines import simulate as simulate_module
from cinematch.pipelines.simulate import simulate
from cinematch.recommender import registry
from cinematch.storage.warehouse import read_session


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch):
    with WebhookRecorder() as recorder:
        monkeypatch.setenv("CINEMATCH_ALERT_WEBHOOK", recorder.url)
        yield recorder


def test_default_story(home: Settings, hook: WebhookRecorder) -> None:
    lines: list[str] = []
    doc = simulate(Settings(home=home.home), say=lines.append)
    decisions = [w["decision"] for w in doc["weeks"]]
    assert decisions == ["insufficient_data", "warning", "retrain"]
    assert [w["promoted"] for w in doc["weeks"]] == [False, False, True]
    # regression: alerts were posted under Airflow only. The first model, week 3's retrain decision, its promotion
    assert hook.events() == ["champion_promoted", "retrain_decided", "champion_promoted"]
    assert {h["source"] for h in hook.received} == {"simulate"}
    assert hook.received[0]["version"] == doc["first_version"]
    assert hook.received[1]["batch_ids"] == ["batch_w1", "batch_w2", "batch_w3"]
    assert hook.received[2]["version"] == doc["weeks"][2]["new_version"]
    assert doc["weeks"][0]["champion_version"] == doc["first_version"]
    assert doc["weeks"][2]["champion_version"] == doc["weeks"][2]["new_version"] != doc["first_version"]
    assert any("drift detected" in line for line in lines)
    with read_session(home) as con:
        stored = con.execute("select decision, round(score, 4) from ops.drift_reports order by checked_at").fetchall()
        assert stored == [(w["decision"], w["score"]) for w in doc["weeks"]]
        models = registry.list_models(con)
        assert len(models) == 2 and models[0]["is_champion"]
        # the promoted model is not worse than the one it replaced on the same data
        promo = models[0]["promotion"]
        assert promo["challenger_rmse"] <= promo["champion_rmse"]
        assert set(models[0]["batch_ids"]) == {"base", "batch_w1", "batch_w2", "batch_w3"}
        # the generated viewing sessions reach gold: the demo's content-performance figure has data
        top = con.execute(
            "select views, completion_rate from gold.content_performance order by views_rank limit 3"
        ).fetchall()
        assert len(top) == 3 and top[0][0] >= top[2][0] > 0 and all(0 <= c <= 1 for _, c in top)


def test_cli_simulate_json(cli) -> None:
    res = cli("simulate", "--weeks", "2", "--json")
    assert res.code == 0, res.stderr
    weeks = res.json["weeks"]
    assert [w["week"] for w in weeks] == [1, 2]
    assert all({"week", "batch_id", "records", "score", "decision", "champion_version"} <= set(w) for w in weeks)


def test_a_failed_week_is_posted_once(home: Settings, hook: WebhookRecorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """simulate posts the failure naming its week; the CLI's error convention does not post it a second time."""
    calls = {"n": 0}
    real = simulate_module.drift_and_retrain

    def failing(con, settings):
        calls["n"] += 1
        if calls["n"] == 2:
            raise QualityGateFailed("quality gate failed on silver.ratings (simulated)")
        return real(con, settings)

    monkeypatch.setattr(simulate_module, "drift_and_retrain", failing)
    with pytest.raises(SystemExit) as exit_:
        main(["simulate", "--weeks", "2", "--json"])
    assert exit_.value.code == 1
    assert hook.events() == ["champion_promoted", "gate_failed"]
    assert hook.received[1]["where"] == "simulate week 2" and hook.received[1]["source"] == "simulate"
