"""The dashboard: one self-contained HTML page whose plots are SVG drawn here, on the server (no CDN, no JS)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from html import escape
from importlib import resources
from string import Template
from typing import TYPE_CHECKING, Any

from cinematch.recommender.registry import same_rows

if TYPE_CHECKING:
    from cinematch.web.api import DriftResponse, GenresResponse, ModelsResponse, TrendingResponse

# The page makes no request of its own: the policy states it, and the browser enforces it.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
W, H = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 60, 16, 34, 62
BLUE, ORANGE, GREEN, RED, AMBER, PURPLE, GREY = (
    "#4c78a8",
    "#f58518",
    "#54a24b",
    "#e45756",
    "#eeca3b",
    "#b279a2",
    "#9d9da1",
)
N_PLOTS = 5


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _num(value: float) -> str:
    """Compact axis and label numbers: 1.2k, 3.4M, 0.85."""
    a = abs(value)
    if a >= 1e6:
        return f"{value / 1e6:.1f}M"
    if a >= 1e4:
        return f"{value / 1e3:.0f}k"
    if a >= 1e3:
        return f"{value / 1e3:.1f}k"
    if a >= 10 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _pct(value: float) -> str:
    return f"{value * 100:.0f}%"


def _nice_max(value: float) -> float:
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    # each candidate divides into five round ticks
    return next(m * exp for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * exp >= value)


def _svg(title: str, body: str) -> str:
    return (f'<svg class="plot" viewBox="0 0 {W} {H}" xmlns="http://www.w3.org/2000/svg" role="img" '
            f'aria-label="{_e(title)}"><title>{_e(title)}</title>{body}</svg>')  # fmt: skip


def _empty(title: str, message: str) -> str:
    return _svg(title, f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" '
                       f'fill="#f6f7f9" stroke="#d8dbe0" stroke-dasharray="4 4"/>'
                       f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" class="muted">{_e(message)}</text>')  # fmt: skip


def _y_axis(ymax: float, fmt: Callable[[float], str], ticks: int = 5) -> str:
    parts = []
    for i in range(ticks + 1):
        v = ymax * i / ticks
        y = _y(v, ymax)
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_e(fmt(v))}</text>')  # fmt: skip
    parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{H - BOTTOM}" y2="{H - BOTTOM}" class="axis"/>')
    return "".join(parts)


def _y(value: float, ymax: float) -> float:
    return H - BOTTOM - (H - TOP - BOTTOM) * max(0.0, min(value, ymax)) / ymax


def _x_labels(labels: Sequence[str], centers: Sequence[float], rotate: bool) -> str:
    out = []
    for label, x in zip(labels, centers, strict=True):
        if rotate:
            out.append(f'<text transform="translate({x:.1f},{H - BOTTOM + 12}) rotate(-30)" text-anchor="end" '
                       f'class="tick">{_e(label)}</text>')  # fmt: skip
        else:
            out.append(f'<text x="{x:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle" class="tick">{_e(label)}</text>')
    return "".join(out)


def _legend(items: Sequence[tuple[str, str]], dashed: Sequence[tuple[str, str]] = ()) -> str:
    x, out = LEFT, []
    for name, color in items:
        out.append(f'<rect x="{x}" y="10" width="12" height="12" rx="2" fill="{color}"/>'
                   f'<text x="{x + 17}" y="20" class="legend">{_e(name)}</text>')  # fmt: skip
        x += 30 + 7 * len(name)
    for name, color in dashed:
        out.append(f'<line x1="{x}" x2="{x + 18}" y1="16" y2="16" stroke="{color}" stroke-width="2" '
                   f'stroke-dasharray="5 3"/><text x="{x + 23}" y="20" class="legend">{_e(name)}</text>')  # fmt: skip
        x += 36 + 7 * len(name)
    return "".join(out)


def grouped_bars(title: str, categories: Sequence[str], series: Sequence[tuple[str, Sequence[float], str]],
                 fmt: Callable[[float], str] = _num, rotate: bool = False) -> str:  # fmt: skip
    """Vertical bars, one group per category and one bar per series."""
    values = [v for _, vals, _ in series for v in vals if v is not None and math.isfinite(v)]
    if not categories or not values:
        return _empty(title, "no data yet")
    ymax = _nice_max(max(values))
    slot = (W - LEFT - RIGHT) / len(categories)
    bar = slot * 0.8 / len(series)
    parts = [_y_axis(ymax, fmt)]
    for i in range(len(categories)):
        for j, (name, vals, color) in enumerate(series):
            v = vals[i]
            if v is None or not math.isfinite(v):
                continue
            x, y = LEFT + slot * i + slot * 0.1 + bar * j, _y(v, ymax)
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar * 0.92:.1f}" height="{H - BOTTOM - y:.1f}" '
                         f'fill="{color}"><title>{_e(categories[i])} {_e(name)}: {_e(fmt(v))}</title></rect>')  # fmt: skip
    centers = [LEFT + slot * (i + 0.5) for i in range(len(categories))]
    parts.append(_x_labels(categories, centers, rotate))
    parts.append(_legend([(name, color) for name, _, color in series]))
    return _svg(title, "".join(parts))


def line_chart(title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None], str]],
               hlines: Sequence[tuple[str, float, str]] = (), bars: tuple[str, Sequence[float], str] | None = None,
               fmt: Callable[[float], str] = _num, marks: Sequence[bool] | None = None) -> str:  # fmt: skip
    """Lines with points over ordered labels, optional reference lines and light bars underneath."""
    values = [v for _, vals, _ in series for v in vals if v is not None and math.isfinite(v)]
    values += [v for _, v, _ in hlines] + (list(bars[1]) if bars else [])
    if not labels or not values:
        return _empty(title, "no data yet")
    ymax = _nice_max(max(values) * 1.08)
    slot = (W - LEFT - RIGHT) / len(labels)
    centers = [LEFT + slot * (i + 0.5) for i in range(len(labels))]
    parts = [_y_axis(ymax, fmt)]
    if bars:
        for x, v in zip(centers, bars[1], strict=True):
            y = _y(v, ymax)
            parts.append(f'<rect x="{x - slot * 0.3:.1f}" y="{y:.1f}" width="{slot * 0.6:.1f}" '
                         f'height="{H - BOTTOM - y:.1f}" fill="{bars[2]}" opacity="0.35">'
                         f'<title>{_e(bars[0])}: {_e(fmt(v))}</title></rect>')  # fmt: skip
    for name, value, color in hlines:
        y = _y(value, ymax)
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{color}" '
                     f'stroke-width="2" stroke-dasharray="6 4"><title>{_e(name)}: {_e(fmt(value))}</title></line>')  # fmt: skip
    for name, vals, color in series:
        pts = [(x, _y(v, ymax), v) for x, v in zip(centers, vals, strict=True) if v is not None and math.isfinite(v)]
        if len(pts) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in pts)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2.5"/>')
        for i, (x, y, v) in enumerate(pts):
            fill = RED if marks and marks[i] else color
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{fill}" stroke="#fff" stroke-width="1.5">'
                         f'<title>{_e(labels[i])} {_e(name)}: {_e(fmt(v))}</title></circle>')  # fmt: skip
    parts.append(_x_labels(labels, centers, rotate=len(labels) > 6 or max(map(len, labels)) > 10))
    legend = [(name, color) for name, _, color in series] + ([(bars[0], bars[2])] if bars else [])
    parts.append(_legend(legend, [(name, color) for name, _, color in hlines]))
    return _svg(title, "".join(parts))


def hbars(title: str, labels: Sequence[str], values: Sequence[float], color: str = BLUE,
          fmt: Callable[[float], str] = _num, note: str = "") -> str:  # fmt: skip
    """Horizontal bars, largest first (for ranked lists such as trending movies)."""
    if not labels:
        return _empty(title, "no data yet")
    left, top = 230, 30
    xmax = _nice_max(max(values) if values else 1.0)
    row = (H - top - 10) / max(len(labels), 1)
    parts = [f'<text x="{left}" y="18" class="legend">{_e(note)}</text>'] if note else []
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        y = top + row * i
        width = (W - left - RIGHT - 44) * max(v, 0) / xmax
        short = label if len(label) <= 34 else label[:32] + "…"
        parts.append(f'<text x="{left - 8}" y="{y + row * 0.62:.1f}" text-anchor="end" class="label">{_e(short)}</text>'
                     f'<rect x="{left}" y="{y + row * 0.15:.1f}" width="{width:.1f}" height="{row * 0.7:.1f}" rx="2" '
                     f'fill="{color}"><title>{_e(label)}: {_e(fmt(v))}</title></rect>'
                     f'<text x="{left + width + 5:.1f}" y="{y + row * 0.62:.1f}" class="tick">{_e(fmt(v))}</text>')  # fmt: skip
    return _svg(title, "".join(parts))


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


def distribution_plot(rows: list[dict], meta: dict) -> tuple[str, str]:
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
        fmt=_pct,
    )


def drift_plot(drift: DriftResponse) -> tuple[str, str]:
    title = "Drift score per check against the retrain threshold"
    if not drift.reports:
        return title, _empty(title, "no drift reports yet: run `cinematch drift`")
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
    series = [(name, [m.metrics.get(key) for m in rows], color)  # type: ignore[misc]
              for name, key, color in (("rmse", "rmse", BLUE), ("mae", "mae", GREEN),
                                       ("precision@10", "precision_at_10", ORANGE), ("ndcg@10", "ndcg_at_10", PURPLE))]  # fmt: skip
    title = "Model metrics per version (* champion)"
    return title, grouped_bars(title, labels, series, fmt=_num, rotate=len(rows) > 4)


def buffer_plot(rows: list[dict]) -> tuple[str, str]:
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
        return "Top trending movies", _empty("Top trending movies", "no trending movies yet")
    title = f"Top trending movies ({chosen.window} window)"
    items = chosen.items[:10]
    return title, hbars(title, [i.title for i in items], [i.trending_score or 0.0 for i in items], color=ORANGE,
                        note="trending score = ratings/day x quality x momentum")  # fmt: skip


# --------------------------------------------------------------------------------------------- the page


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pair(same: dict[str, Any], metric: str) -> str:
    """'this version / its champion' on the same held-out rows, or '–' (a first model was compared with nothing)."""
    a, b = same[f"{metric}_same_rows"], same[f"champion_{metric}_same_rows"]
    return f"{_fmt(a)} / {_fmt(b)}" if a is not None and b is not None else "–"


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _template() -> Template:
    return Template(resources.files("cinematch.web").joinpath("templates/dashboard.html").read_text(encoding="utf-8"))


def render(meta: dict, distribution: list[dict], drift: DriftResponse, models: ModelsResponse, buffer: list[dict],
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
    models_table = _table(
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
                _fmt(m.metrics.get("rmse")),
                _fmt(m.metrics.get("ndcg_at_10")),
                _fmt(m.metrics.get("precision_at_10")),
                _pair(same_rows(m.promotion), "ndcg"),
                _pair(same_rows(m.promotion), "rmse"),
                len(m.batch_ids),
                m.promotion.get("decision", "–"),
            ]
            for m in reversed(models.models)
        ],
    )
    genres_table = _table(
        ["genre", "ratings", "mean", f"latest month ({genres.latest_month or '–'})", "share"],
        [
            [g.genre, f"{g.n_ratings:,}", _fmt(g.avg_rating, 2), f"{g.latest_n_ratings:,}", _pct(g.latest_share or 0.0)]
            for g in genres.genres[:10]
        ],
    )
    return _template().substitute(
        views_version=_e(meta.get("views_version", "")),
        cards="".join(
            f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{_e(v)}</div></div>' for k, v in cards
        ),
        plots="".join(f'<section class="panel"><h2>{_e(t)}</h2>{svg}</section>' for t, svg in plots),
        models_table=models_table,
        genres_table=genres_table,
    )


def not_ready(message: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>CineMatch</title></head>'
            f'<body style="font-family:sans-serif;padding:2rem"><h1>CineMatch</h1><p>{_e(message)}</p></body></html>')  # fmt: skip
