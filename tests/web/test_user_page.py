"""The user page (`/users/{id}`, `/users/{id}/profile`, the search box on `/`) against real uvicorn servers."""

from __future__ import annotations

import re
import shutil
from html import escape
from pathlib import Path

import httpx2
import pytest
from tests.web.conftest import CliServer, ThreadServer
from tests.web.test_dashboard import CHROMIUM_FLAGS

from cinematch.core.settings import Settings
from cinematch.ingest.bronze import ingest_file
from cinematch.lakehouse.etl import run_etl
from cinematch.serving.publish import publish
from cinematch.serving.user_sql import RECENT_RATINGS
from cinematch.storage.warehouse import write_session


def get(url: str, **kw) -> httpx2.Response:
    return httpx2.get(url, timeout=10, **kw)


def test_profile_carries_the_list_its_lineage_and_the_ratings(server: CliServer, served_home: Settings) -> None:
    doc = get(f"{server.url}/users/1/profile").json()
    recs = get(f"{server.url}/recommendations/1", params={"k": 10}).json()
    health = get(f"{server.url}/health").json()
    # the same list, `because` and scores as /recommendations serves, with the model and batches behind it
    assert doc["recommendations"] == recs and len(recs["items"]) == 10 and recs["fallback"] is False
    assert any(i["because"] for i in recs["items"])
    assert recs["model_version"] == health["model_version"]
    assert recs["batch_ids"] == ["batch_w1", "batch_w2", "batch_w3"]
    assert doc["views_version"] == health["views_version"] and health["model_version"] in doc["explanation"]
    with write_session(served_home) as wh:
        n, first, last = wh.execute(
            "select count(*), min(rated_at), max(rated_at) from silver.ratings where user_id = 1"
        ).fetchall()[0]
    assert doc["n_ratings"] == n and len(doc["recent_ratings"]) == min(n, RECENT_RATINGS)
    assert doc["first_rated_at"].startswith(f"{first:%Y-%m-%dT%H:%M:%S}")
    assert doc["recent_ratings"][0]["rated_at"].startswith(f"{last:%Y-%m-%dT%H:%M:%S}")
    dates = [r["rated_at"] for r in doc["recent_ratings"]]
    assert dates == sorted(dates, reverse=True)
    assert {r["batch_id"] for r in doc["recent_ratings"]} <= {"batch_w1", "batch_w2", "batch_w3"}
    mix = doc["genre_mix"]
    assert len(mix) == 7 and sum(g["share"] for g in mix) == pytest.approx(1.0)
    assert sum(g["population_share"] for g in mix) == pytest.approx(1.0)
    assert [g["share"] for g in mix] == sorted((g["share"] for g in mix), reverse=True)


def test_unknown_user_is_a_404_in_json_and_html(server: CliServer) -> None:
    resp = get(f"{server.url}/users/987654321/profile")
    assert resp.status_code == 404 and set(resp.json()) == {"error", "detail"}
    assert "987654321" in resp.json()["detail"]
    page = get(f"{server.url}/users/987654321")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "User 987654321 is not known" in page.text and 'action="/users"' in page.text


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/users/abc", {}),
        ("/users/1.5", {}),
        ("/users/+5", {}),
        ("/users/99999999999999999999999/profile", {}),
        ("/users/1_0/profile", {}),
        ("/users", {"user_id": "abc"}),
        ("/users", {}),
    ],
)
def test_invalid_ids_are_a_422(server: CliServer, path: str, params: dict) -> None:
    resp = get(f"{server.url}{path}", params=params)
    assert resp.status_code == 422, (path, resp.text)
    assert resp.json()["error"] == "invalid request"


def test_search_box_redirects_to_the_user_page(server: CliServer) -> None:
    home = get(f"{server.url}/")
    assert re.search(r'<form class="search" method="get" action="/users"[^>]*>', home.text)
    assert "form-action 'self'" in home.headers["content-security-policy"]
    resp = get(f"{server.url}/users", params={"user_id": "0042"})
    assert resp.status_code == 303 and resp.headers["location"] == "/users/42"


def test_user_page_shows_list_plot_lineage_and_ratings(server: CliServer) -> None:
    doc = get(f"{server.url}/users/1/profile").json()
    resp = get(f"{server.url}/users/1")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in resp.headers["content-security-policy"]
    html = resp.text
    assert "<script" not in html.lower() and html.count("<svg") == 1
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    titles = re.findall(r'<td class="title">(.*?)</td>', html)
    assert titles == [escape(i["title"]) for i in doc["recommendations"]["items"]]
    why = re.findall(r'<td class="why">(.*?)</td>', html)
    assert why == [escape("; ".join(b["title"] for b in i["because"])) or "–" for i in doc["recommendations"]["items"]]
    recs = doc["recommendations"]
    assert recs["model_version"] in html and all(b in html for b in recs["batch_ids"])
    for rating in doc["recent_ratings"]:
        assert escape(rating["title"]) in html and rating["rated_at"][:10] in html
    assert f"Recent ratings ({len(doc['recent_ratings'])}, newest first)" in html
    # the plot compares the user's largest genre with everyone's
    top = doc["genre_mix"][0]
    assert re.search(rf"<title>{re.escape(top['genre'])} user 1: {round(top['share'] * 100)}%</title>", html)


def test_cold_start_user_gets_the_fallback_and_is_told(served_home: Settings, tmp_path: Path) -> None:
    """A viewing-data user without any rating is known: the page serves the fallback list and says so."""
    home = Settings(home=tmp_path / "home")
    home.home_dir.mkdir(parents=True)
    shutil.copy(served_home.duckdb_path, home.duckdb_path)
    shutil.copytree(served_home.models_dir, home.models_dir)  # publish refreshes the champion's lists
    users = tmp_path / "users.csv"
    users.write_text("user_id,signup_date,country\n5000,2024-03-01,US\n1,2024-01-01,GB\n")
    with write_session(home, "test") as con:
        assert ingest_file(con, users, kind="users")["inserted"] == 2
        run_etl(con, home, write_lake=False)
        publish(con, home)
    with ThreadServer(home) as url:
        doc = get(f"{url}/users/5000/profile").json()
        fallback = get(f"{url}/recommendations/5000", params={"k": 10}).json()
        page = get(f"{url}/users/5000")
        known = get(f"{url}/users/1/profile").json()
    assert doc["n_ratings"] == 0 and doc["recent_ratings"] == [] and doc["avg_rating"] is None
    assert doc["recommendations"] == fallback and fallback["fallback"] is True and len(fallback["items"]) == 10
    assert all(i["because"] == [] for i in fallback["items"]) and "cold start" in doc["explanation"]
    assert all(g["share"] == 0 for g in doc["genre_mix"]) and len(doc["genre_mix"]) == 7
    assert page.status_code == 200 and "Fallback list for user 5000" in page.text
    assert 'class="note fallback"' in page.text and "no ratings yet" in page.text
    assert known["recommendations"]["fallback"] is False and known["n_ratings"] > 0


@pytest.mark.browser
def test_type_an_id_and_see_the_list_in_chromium(server: CliServer, tmp_path: Path) -> None:
    """Headless Chromium (Playwright): open the dashboard, type a user id, submit, read the list and the ratings."""
    from playwright.sync_api import sync_playwright  # the dev extra; a missing package fails, never skips

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is needed for browser tests (.ci/run installs it)"
    doc = get(f"{server.url}/users/7/profile").json()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=[f for f in CHROMIUM_FLAGS if f != "--headless"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.set_default_timeout(15_000)
            blocked: list[str] = []
            page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
            page.goto(f"{server.url}/")
            page.fill("#user-search", "7")
            with page.expect_navigation():
                page.click("form.search button")
            assert page.url == f"{server.url}/users/7"
            titles = page.locator("#top10 tr.rec td.title").all_inner_texts()
            recent = page.locator("#recent tbody tr td:first-child").all_inner_texts()
            explanation = page.inner_text("#explanation")
            plot_box = page.locator("#genre-mix svg").bounding_box()
            page.screenshot(path=str(tmp_path / "user7.png"), full_page=True)
            # an unknown id: the page says so, and the search box is still there
            page.fill("#user-search", "987654321")
            with page.expect_navigation():
                page.click("form.search button")
            message = page.inner_text("#message")
        finally:
            browser.close()
    assert titles == [i["title"] for i in doc["recommendations"]["items"]] and len(titles) == 10
    assert recent == [r["title"] for r in doc["recent_ratings"]] and recent
    assert explanation == doc["explanation"] and doc["recommendations"]["model_version"] in explanation
    assert plot_box is not None and plot_box["width"] > 300 and plot_box["height"] > 100
    assert "User 987654321 is not known" in message
    assert not blocked, blocked
