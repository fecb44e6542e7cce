"""The dashboard: one self-contained HTML page whose plots are SVG drawn here, on the server (no CDN, no JS)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from importlib import resources
from string import Template
from typing import Any

from cinematch.recommender.registry import same_rows
from cinematch.serving.charts import (
    AMBER,
    BLUE,
    GREEN,
    ORANGE,
    PURPLE,
    RED,
    empty_chart,
    esc,
    fmt_num,
    fmt_pct,
    grouped_bars,
    hbars,
    line_chart,
)  # fmt: skip
from cinematch.web.schemas import DriftResponse, GenresResponse, ModelsResponse, TrendingResponse

# The page makes no request of its own: the policy states it, and the browser enforces it. The one form, the user
# search, submits to this server only.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
N_PLOTS = 5


# --------------------------------------------------------------------------------------------- the five plots


def _short_version(version: str) -> str:
    # version_20240101T120000_123456Z -> 01-01 12:00:00
    try:
        stamp = datetime.strptime(version.removeprefix("version_")[:15], "%Y%m%dT%H%M%S")
    except ValueError:
        return version[-12:]
    return f"{stamp:%m-%d %H:%M:%S}"


def _when(value: Any) -> str:
    return f"{value:%m-%d %H:%M}" if isinstance(value, datetime) else str(value)


def distribution_plot(rows: list[dict[str, Any]], meta: dict[str, Any]) -> tuple[str, str]:
    n_ref = len(meta.get("reference_batches") or [])
    latest = meta.get("latest_batch") or "none"
    title = "Rating distribution: reference vs latest batch"
    return title, grouped_bars(
        title,
        [f"{r['rating']:g}" for r in rows],
        [
            (f"reference ({n_ref} batches)", [r["reference_share"] for r in rows], BLUE),
            (f"latest ({latest})", [r["latest_share"] for r in rows], ORANGE),
        ],
        fmt=fmt_pct,
    )


def drift_plot(drift: DriftResponse) -> tuple[str, str]:
    title = "Drift score per check against the retrain threshold"
    if not drift.reports:
        return title, empty_chart(title, "no drift reports yet: run `cinematch drift`")
    reports = drift.reports[-20:]
    return title, line_chart(
        title,
        [_when(r.checked_at) for r in reports],
        [("drift score", [r.score for r in reports], PURPLE)],
        hlines=[
            (f"retrain at {drift.retrain_threshold:g}", drift.retrain_threshold, RED),
            (f"warning at {drift.warning_threshold:g}", drift.warning_threshold, AMBER),
        ],
        marks=[r.should_retrain for r in reports],
    )


def models_plot(models: ModelsResponse) -> tuple[str, str]:
    rows = models.models[-8:]
    labels = [_short_version(m.version) + (" *" if m.is_champion else "") for m in rows]
    series = [(name, [m.metrics.get(key) for m in rows], color)
              for name, key, color in (("rmse", "rmse", BLUE), ("mae", "mae", GREEN),
                                       ("precision@10", "precision_at_10", ORANGE), ("ndcg@10", "ndcg_at_10", PURPLE))]  # fmt: skip
    title = "Model metrics per version (* champion)"
    return title, grouped_bars(title, labels, series, fmt=fmt_num, rotate=len(rows) > 4)


def buffer_plot(rows: list[dict[str, Any]]) -> tuple[str, str]:
    ratings = [r for r in rows if r["kind"] == "ratings"][-16:]
    title = "Buffer size over time (ratings per batch, cumulative)"
    return title, line_chart(
        title,
        [r["batch_id"] for r in ratings],
        [("cumulative records", [float(r["cumulative_records"]) for r in ratings], GREEN)],
        bars=("records in batch", [float(r["record_count"]) for r in ratings], BLUE),
    )


def trending_plot(windows: list[TrendingResponse]) -> tuple[str, str]:
    chosen = next((w for w in windows if w.items), windows[0] if windows else None)
    if chosen is None or not chosen.items:
        return "Top trending movies", empty_chart("Top trending movies", "no trending movies yet")
    title = f"Top trending movies ({chosen.window} window)"
    items = chosen.items[:10]
    return title, hbars(title, [i.title for i in items], [i.trending_score or 0.0 for i in items], color=ORANGE,
                        note="trending score = ratings/day x quality x momentum")  # fmt: skip


# --------------------------------------------------------------------------------------------- the page


def html_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pair(same: dict[str, Any], metric: str) -> str:
    """'this version / its champion' on the same held-out rows, or '–' (a first model was compared with nothing)."""
    a, b = same[f"{metric}_same_rows"], same[f"champion_{metric}_same_rows"]
    return f"{fmt_value(a)} / {fmt_value(b)}" if a is not None and b is not None else "–"


def fmt_value(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def template(name: str) -> Template:
    return Template(resources.files("cinematch.web").joinpath(f"templates/{name}").read_text(encoding="utf-8"))


def style() -> str:
    """The pages' shared stylesheet, inlined (the policy allows no stylesheet request)."""
    return resources.files("cinematch.web").joinpath("templates/style.css").read_text(encoding="utf-8")


def search_form(value: str = "") -> str:
    """The user search: a plain GET form to ``/users``, which redirects to ``/users/{id}`` (no script needed)."""
    return ('<form class="search" method="get" action="/users" role="search">'
            '<label for="user-search">User id</label>'
            f'<input id="user-search" name="user_id" type="text" inputmode="numeric" pattern="-?[0-9]{{1,19}}" '
            f'required placeholder="e.g. 42" value="{esc(value)}"><button type="submit">Show</button></form>')  # fmt: skip


def render(meta: dict[str, Any], distribution: list[dict[str, Any]], drift: DriftResponse, models: ModelsResponse, buffer: list[dict[str, Any]],
           trending: list[TrendingResponse], genres: GenresResponse) -> str:  # fmt: skip
    """The whole dashboard page for one views file."""
    plots = [distribution_plot(distribution, meta), drift_plot(drift), models_plot(models), buffer_plot(buffer),
             trending_plot(trending)]  # fmt: skip
    assert len(plots) == N_PLOTS
    last = drift.reports[-1] if drift.reports else None
    ratings = [b for b in buffer if b["kind"] == "ratings"]
    cards = [
        ("champion", meta.get("model_version") or "none yet"),
        ("published", _when(meta.get("published_at"))),
        ("users with recommendations", f"{meta.get('n_users', 0):,}"),
        ("ratings in buffer", f"{int(ratings[-1]['cumulative_records']) if ratings else 0:,}"),
        ("latest batch", meta.get("latest_batch") or "none"),
        ("last drift decision", f"{last.decision} ({last.score:.2f})" if last and last.score is not None else "–"),
    ]
    models_table = html_table(
        [
            "version",
            "status",
            "rmse",
            "ndcg@10",
            "precision@10",
            "ndcg@10 vs champion, same rows",
            "rmse vs champion, same rows",
            "batches",
            "decision",
        ],
        [
            [
                m.version + (" *" if m.is_champion else ""),
                m.status,
                fmt_value(m.metrics.get("rmse")),
                fmt_value(m.metrics.get("ndcg_at_10")),
                fmt_value(m.metrics.get("precision_at_10")),
                _pair(same_rows(m.promotion), "ndcg"),
                _pair(same_rows(m.promotion), "rmse"),
                len(m.batch_ids),
                m.promotion.get("decision", "–"),
            ]
            for m in reversed(models.models)
        ],
    )
    genres_table = html_table(
        ["genre", "ratings", "mean", f"latest month ({genres.latest_month or '–'})", "share"],
        [
            [
                g.genre,
                f"{g.n_ratings:,}",
                fmt_value(g.avg_rating, 2),
                f"{g.latest_n_ratings:,}",
                fmt_pct(g.latest_share or 0.0),
            ]
            for g in genres.genres[:10]
        ],
    )
    return template("dashboard.html").substitute(
        style=style(),
        search=search_form(),
        views_version=esc(meta.get("views_version", "")),
        cards="".join(
            f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div></div>' for k, v in cards
        ),
        plots="".join(f'<section class="panel"><h2>{esc(t)}</h2>{svg}</section>' for t, svg in plots),
        models_table=models_table,
        genres_table=genres_table,
    )


def not_ready(message: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>CineMatch</title></head>'
            f'<body style="font-family:sans-serif;padding:2rem"><h1>CineMatch</h1><p>{esc(message)}</p></body></html>')  # fmt: skip
