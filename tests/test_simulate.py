"""The main job: the default 3-week story, and that the warehouse tells the same story as the narrative."""

from __future__ import annotations

from cinematch.recommender import registry
from cinematch.settings import Settings
from cinematch.simulate import simulate
from cinematch.warehouse import read_session


def test_default_story(home: Settings) -> None:
    lines: list[str] = []
    doc = simulate(home, say=lines.append)
    decisions = [w["decision"] for w in doc["weeks"]]
    assert decisions == ["insufficient_data", "warning", "retrain"]
    assert [w["promoted"] for w in doc["weeks"]] == [False, False, True]
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
