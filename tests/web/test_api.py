"""The HTTP API against real uvicorn servers: endpoints, errors, admin auth, reload, atomic swap, fuzzing."""

from __future__ import annotations

import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import httpx2
import pytest
from tests.served import API_KEY, DRIFT_SCORES
from tests.web.conftest import CliServer, ThreadServer, start_cli_server, wait_ready

from cinematch.cli import main
from cinematch.core.settings import Settings
from cinematch.serving.publish import publish
from cinematch.serving.read import Views
from cinematch.storage.warehouse import write_session

NOT_READY = "no published views: run `cinematch publish`"


def get(url: str, **kw) -> httpx2.Response:
    return httpx2.get(url, timeout=10, **kw)


def test_health_and_recommendations(server: CliServer, served_home: Settings) -> None:
    health = get(f"{server.url}/health").json()
    assert health["ready"] is True and health["model_version"].startswith("version_")
    doc = get(f"{server.url}/recommendations/1", params={"k": 5}).json()
    assert doc["user_id"] == 1 and doc["fallback"] is False and len(doc["items"]) == 5
    assert doc["model_version"] == health["model_version"] and doc["batch_ids"] == ["batch_w1", "batch_w2", "batch_w3"]
    assert [i["rank"] for i in doc["items"]] == [1, 2, 3, 4, 5]
    assert all(i["title"] and i["genres"] and isinstance(i["score"], float) for i in doc["items"])
    assert doc["generated_at"].endswith("Z")


def test_unknown_user_gets_the_fallback(server: CliServer) -> None:
    doc = get(f"{server.url}/recommendations/987654321", params={"k": 100}).json()
    assert doc["fallback"] is True and doc["model_version"].startswith("version_") and doc["items"]
    scores = [i["score"] for i in doc["items"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/recommendations/abc", {}, 422),
        ("/recommendations/1.5", {}, 422),
        ("/recommendations/99999999999999999999999", {}, 422),
        ("/recommendations/1", {"k": 0}, 422),
        ("/recommendations/1", {"k": 101}, 422),
        ("/recommendations/1", {"k": "x"}, 422),
        ("/movies/trending", {"window": "1d"}, 422),
        ("/movies/trending", {"limit": 0}, 422),
        ("/no/such/path", {}, 404),
    ],
)
def test_errors_are_json_without_internals(server: CliServer, path: str, params: dict, status: int) -> None:
    resp = get(f"{server.url}{path}", params=params)
    assert resp.status_code == status
    body = resp.json()
    assert set(body) == {"error", "detail"} and body["error"]
    assert "Traceback" not in resp.text and 'File "' not in resp.text


def test_trending_genres_models_drift(server: CliServer) -> None:
    for window in ("7d", "30d", "90d"):
        doc = get(f"{server.url}/movies/trending", params={"window": window, "limit": 3}).json()
        assert doc["window"] == window and len(doc["items"]) <= 3
        assert [i["rank"] for i in doc["items"]] == list(range(1, len(doc["items"]) + 1))
    assert get(f"{server.url}/movies/trending").json()["window"] == "7d"
    genres = get(f"{server.url}/genres").json()["genres"]
    assert {g["genre"] for g in genres} >= {"Action", "Drama"}
    models = get(f"{server.url}/models").json()
    assert len(models["models"]) == 2 and models["champion"] in {m["version"] for m in models["models"]}
    assert all("rmse" in m["metrics"] for m in models["models"])
    drift = get(f"{server.url}/drift").json()
    assert [r["score"] for r in drift["reports"]] == list(DRIFT_SCORES) and drift["retrain_threshold"] == 1.0
    spec = get(f"{server.url}/openapi.json").json()
    assert {"/health", "/recommendations/{user_id}", "/movies/trending", "/genres", "/models", "/drift",
            "/admin/reload", "/"} <= set(spec["paths"])  # fmt: skip


def test_admin_reload_needs_the_key(server: CliServer, served_home: Settings) -> None:
    url = f"{server.url}/admin/reload"
    assert httpx2.post(url, timeout=10).status_code == 401
    wrong = httpx2.post(url, headers={"X-API-Key": "nope"}, timeout=10)
    assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
    ok = httpx2.post(url, headers={"X-API-Key": API_KEY}, timeout=10)
    assert ok.status_code == 200 and ok.json()["ready"] is True
    # a publish is picked up at once by a reload (the automatic check may lag up to a second)
    with write_session(served_home, "publish") as con:
        doc = publish(con, served_home)
    ok = httpx2.post(url, headers={"X-API-Key": API_KEY}, timeout=10).json()
    assert ok["views_version"] == doc["views_version"]
    assert get(f"{server.url}/health").json()["views_version"] == doc["views_version"]


def test_admin_disabled_without_a_configured_key(served_home: Settings) -> None:
    with ThreadServer(served_home.model_copy(update={"api_key": None})) as url:
        resp = httpx2.post(f"{url}/admin/reload", headers={"X-API-Key": "anything"}, timeout=10)
        assert resp.status_code == 503 and resp.json()["error"] == "admin disabled"


def test_unexpected_errors_are_a_json_500(served_home: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Views, name: str) -> list:
        raise RuntimeError("internals: /secret/path")

    monkeypatch.setattr(Views, "table", broken)
    with ThreadServer(served_home) as url:
        resp = httpx2.get(f"{url}/genres", timeout=10)
        assert httpx2.get(f"{url}/health", timeout=10).status_code == 200  # the server keeps serving
    assert resp.status_code == 500 and resp.json()["error"] == "internal error"
    assert "secret" not in resp.text and "Traceback" not in resp.text


def test_request_log_is_key_value(server: CliServer) -> None:
    get(f"{server.url}/recommendations/2")
    time.sleep(0.2)
    lines = [ln for ln in server.log_path.read_text().splitlines() if "event=request " in ln]
    assert any("method=GET path=/recommendations/2 status=200 duration_ms=" in ln for ln in lines)


@pytest.mark.parametrize(
    ("breaker", "escaped"),
    [("%0a", r"\n"), ("%0d", r"\r"), ("%0d%0a", r"\r\n"), ("%e2%80%a8", r"\u2028"), ("%c2%85", r"\x85")],
)
def test_request_path_cannot_forge_a_log_line(server: CliServer, breaker: str, escaped: str) -> None:
    """Issue 16, point 9: CR, LF and other line breaks in a logged value are escaped, so a request path cannot
    start a line of its own in the request log."""
    forged = "event=request method=GET path=/forged status=200 duration_ms=0.1"
    get(f"{server.url}/recommendations/1{breaker}{quote(forged, safe='=/')}")
    time.sleep(0.3)
    lines = server.log_path.read_text().splitlines()  # splits on every line boundary, U+2028 and NEL included
    assert not [ln for ln in lines if ln.startswith("event=")], "a request path started a log line"
    ours = [ln for ln in lines if f'event=request method=GET path="/recommendations/1{escaped}event=request' in ln]
    assert len(ours) == 1 and "path=/forged" in ours[0] and re.match(r"\d{4}-\d\d-\d\d \S+ INFO ", ours[0]), ours


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/recommendations/1_000", {}),
        ("/recommendations/+5", {}),
        ("/recommendations/%205", {}),
        ("/recommendations/1", {"k": "1.0"}),
        ("/recommendations/1", {"k": "+5"}),
        ("/recommendations/1", {"k": "1_0"}),
        ("/movies/1_0", {}),
        ("/movies/+1/performance", {}),
        ("/movies/trending", {"limit": "1.0"}),
        ("/content/performance", {"limit": "1e1"}),
    ],
)
def test_ids_and_counts_must_be_plain_decimal_integers(server: CliServer, path: str, params: dict) -> None:
    """Issue 16, point 17: pydantic's lax int parsing took `1_000`, `+5` and `k=1.0`; now they get a 422."""
    resp = get(f"{server.url}{path}", params=params)
    assert resp.status_code == 422, (path, params, resp.text)
    assert resp.json()["error"] == "invalid request" and "plain decimal integer" in resp.json()["detail"]


def test_plain_decimal_ids_still_work(server: CliServer) -> None:
    assert get(f"{server.url}/recommendations/-5", params={"k": "3"}).json()["fallback"] is True
    assert get(f"{server.url}/recommendations/0001", params={"k": "03"}).json()["user_id"] == 1


def test_atomic_swap_under_concurrent_reads(server: CliServer, served_home: Settings) -> None:
    """Threads read while publish runs repeatedly: no request fails, no list is empty, versions change."""
    stop = threading.Event()
    failures: list[str] = []
    seen: set[str] = set()
    count = [0]

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        with httpx2.Client(base_url=server.url, timeout=10) as client:
            while not stop.is_set():
                if rng.random() < 0.7:
                    resp = client.get(f"/recommendations/{rng.randint(1, 200)}", params={"k": 10})
                else:
                    resp = client.get("/movies/trending", params={"window": rng.choice(["7d", "30d", "90d"])})
                count[0] += 1
                if resp.status_code != 200 or not resp.json()["items"]:
                    failures.append(f"{resp.request.url} -> {resp.status_code} {resp.text[:200]}")
                    continue
                seen.add(resp.json()["views_version"])

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    try:
        deadline, published = time.monotonic() + 4.0, 0
        with write_session(served_home, "publish") as con:
            while time.monotonic() < deadline or published < 5:
                publish(con, served_home)
                published += 1
                time.sleep(0.15)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
    assert not failures, failures[:5]
    assert count[0] > 200 and len(seen) >= 2


def test_schemathesis_finds_no_server_error(server: CliServer, tmp_path: Path) -> None:
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert cli, "schemathesis is part of the dev extra"
    proc = subprocess.run(
        [cli, "run", f"{server.url}/openapi.json", "--checks", "not_a_server_error", "-n", "50", "--seed", "7",
         "--generation-database", "none", "--no-color", "-w", "2",
         "-H", f"X-API-Key: {API_KEY}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:]
    # 8 original operations + /content/performance, /movies/{id}/performance (sessions) + /movies/{id} (TMDB)
    # + /users (the search box's redirect), /users/{id} (the user page), /users/{id}/profile
    assert "14 selected" in proc.stdout or "14/14" in proc.stdout


def test_serve_before_publish_then_reload_and_ctrl_c(served_home: Settings, tmp_path: Path) -> None:
    """A fresh home: 503 until the first publish, ready within a second after it, exit 0 on Ctrl-C."""
    home = Settings(home=tmp_path / "home")
    home.home_dir.mkdir(parents=True)
    shutil.copy(served_home.duckdb_path, home.duckdb_path)
    shutil.copytree(served_home.models_dir, home.models_dir)  # publish refreshes the champion's lists
    srv = start_cli_server(home, tmp_path / "serve.log")
    try:
        wait_ready(srv.url, status=503)
        for path in ("/health", "/recommendations/1", "/movies/trending", "/genres", "/models", "/drift"):
            resp = get(f"{srv.url}{path}")
            assert resp.status_code == 503 and resp.json()["detail"] == NOT_READY, path
        assert get(f"{srv.url}/").status_code == 503
        with write_session(home, "publish") as con:
            doc = publish(con, home)
        wait_ready(srv.url, timeout=5)
        assert get(f"{srv.url}/health").json()["views_version"] == doc["views_version"]
        assert get(f"{srv.url}/recommendations/1").json()["fallback"] is False
    finally:
        code, out, log = srv.stop(signal.SIGINT)
    assert code == 0, log[-2000:]
    assert "event=server_stopped" in log and "Traceback" not in log
    assert srv.doc["url"] == srv.url and srv.doc["views_version"] is None and "Traceback" not in out


def test_serve_refuses_a_busy_port(
    server: CliServer, served_home: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("CINEMATCH_HOME", str(served_home.home))
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--port", server.url.rsplit(":", 1)[1]])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "already in use" in err and "Traceback" not in err
