"""SVG charts drawn on the server (grouped bars, lines, horizontal bars): shared by the dashboard and the HTML report."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

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


def esc(value: Any) -> str:
    return escape(str(value), quote=True)


def fmt_num(value: float) -> str:
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


def fmt_pct(value: float) -> str:
    return f"{value * 100:.0f}%"


def _nice_max(value: float) -> float:
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    # each candidate divides into five round ticks
    return float(next(m * exp for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * exp >= value))


def _svg(title: str, body: str) -> str:
    return (f'<svg class="plot" viewBox="0 0 {W} {H}" xmlns="http://www.w3.org/2000/svg" role="img" '
            f'aria-label="{esc(title)}"><title>{esc(title)}</title>{body}</svg>')  # fmt: skip


def empty_chart(title: str, message: str) -> str:
    return _svg(title, f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" '
                       f'fill="#f6f7f9" stroke="#d8dbe0" stroke-dasharray="4 4"/>'
                       f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" class="muted">{esc(message)}</text>')  # fmt: skip


def _y_axis(ymax: float, fmt: Callable[[float], str], ticks: int = 5) -> str:
    parts = []
    for i in range(ticks + 1):
        v = ymax * i / ticks
        y = _y(v, ymax)
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{esc(fmt(v))}</text>')  # fmt: skip
    parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{H - BOTTOM}" y2="{H - BOTTOM}" class="axis"/>')
    return "".join(parts)


def _y(value: float, ymax: float) -> float:
    return H - BOTTOM - (H - TOP - BOTTOM) * max(0.0, min(value, ymax)) / ymax


def _x_labels(labels: Sequence[str], centers: Sequence[float], rotate: bool) -> str:
    out = []
    for label, x in zip(labels, centers, strict=True):
        if rotate:
            out.append(f'<text transform="translate({x:.1f},{H - BOTTOM + 12}) rotate(-30)" text-anchor="end" '
                       f'class="tick">{esc(label)}</text>')  # fmt: skip
        else:
            out.append(f'<text x="{x:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle" class="tick">{esc(label)}</text>')
    return "".join(out)


def _legend(items: Sequence[tuple[str, str]], dashed: Sequence[tuple[str, str]] = ()) -> str:
    x, out = LEFT, []
    for name, color in items:
        out.append(f'<rect x="{x}" y="10" width="12" height="12" rx="2" fill="{color}"/>'
                   f'<text x="{x + 17}" y="20" class="legend">{esc(name)}</text>')  # fmt: skip
        x += 30 + 7 * len(name)
    for name, color in dashed:
        out.append(f'<line x1="{x}" x2="{x + 18}" y1="16" y2="16" stroke="{color}" stroke-width="2" '
                   f'stroke-dasharray="5 3"/><text x="{x + 23}" y="20" class="legend">{esc(name)}</text>')  # fmt: skip
        x += 36 + 7 * len(name)
    return "".join(out)


def grouped_bars(title: str, categories: Sequence[str], series: Sequence[tuple[str, Sequence[float | None], str]],
                 fmt: Callable[[float], str] = fmt_num, rotate: bool = False) -> str:  # fmt: skip
    """Vertical bars, one group per category and one bar per series."""
    values = [v for _, vals, _ in series for v in vals if v is not None and math.isfinite(v)]
    if not categories or not values:
        return empty_chart(title, "no data yet")
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
                         f'fill="{color}"><title>{esc(categories[i])} {esc(name)}: {esc(fmt(v))}</title></rect>')  # fmt: skip
    centers = [LEFT + slot * (i + 0.5) for i in range(len(categories))]
    parts.append(_x_labels(categories, centers, rotate))
    parts.append(_legend([(name, color) for name, _, color in series]))
    return _svg(title, "".join(parts))


def line_chart(title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None], str]],
               hlines: Sequence[tuple[str, float, str]] = (), bars: tuple[str, Sequence[float], str] | None = None,
               fmt: Callable[[float], str] = fmt_num, marks: Sequence[bool] | None = None) -> str:  # fmt: skip
    """Lines with points over ordered labels, optional reference lines and light bars underneath."""
    values = [v for _, vals, _ in series for v in vals if v is not None and math.isfinite(v)]
    values += [v for _, v, _ in hlines] + (list(bars[1]) if bars else [])
    if not labels or not values:
        return empty_chart(title, "no data yet")
    ymax = _nice_max(max(values) * 1.08)
    slot = (W - LEFT - RIGHT) / len(labels)
    centers = [LEFT + slot * (i + 0.5) for i in range(len(labels))]
    parts = [_y_axis(ymax, fmt)]
    if bars:
        for x, v in zip(centers, bars[1], strict=True):
            y = _y(v, ymax)
            parts.append(f'<rect x="{x - slot * 0.3:.1f}" y="{y:.1f}" width="{slot * 0.6:.1f}" '
                         f'height="{H - BOTTOM - y:.1f}" fill="{bars[2]}" opacity="0.35">'
                         f'<title>{esc(bars[0])}: {esc(fmt(v))}</title></rect>')  # fmt: skip
    for name, value, color in hlines:
        y = _y(value, ymax)
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{color}" '
                     f'stroke-width="2" stroke-dasharray="6 4"><title>{esc(name)}: {esc(fmt(value))}</title></line>')  # fmt: skip
    for name, vals, color in series:
        pts = [(x, _y(v, ymax), v) for x, v in zip(centers, vals, strict=True) if v is not None and math.isfinite(v)]
        if len(pts) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in pts)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2.5"/>')
        for i, (x, y, v) in enumerate(pts):
            fill = RED if marks and marks[i] else color
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{fill}" stroke="#fff" stroke-width="1.5">'
                         f'<title>{esc(labels[i])} {esc(name)}: {esc(fmt(v))}</title></circle>')  # fmt: skip
    parts.append(_x_labels(labels, centers, rotate=len(labels) > 6 or max(map(len, labels)) > 10))
    legend = [(name, color) for name, _, color in series] + ([(bars[0], bars[2])] if bars else [])
    parts.append(_legend(legend, [(name, color) for name, _, color in hlines]))
    return _svg(title, "".join(parts))


def hbars(title: str, labels: Sequence[str], values: Sequence[float], color: str = BLUE,
          fmt: Callable[[float], str] = fmt_num, note: str = "") -> str:  # fmt: skip
    """Horizontal bars, largest first (for ranked lists such as trending movies)."""
    if not labels:
        return empty_chart(title, "no data yet")
    left, top = 230, 30
    xmax = _nice_max(max(values) if values else 1.0)
    row = (H - top - 10) / max(len(labels), 1)
    parts = [f'<text x="{left}" y="18" class="legend">{esc(note)}</text>'] if note else []
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        y = top + row * i
        width = (W - left - RIGHT - 44) * max(v, 0) / xmax
        short = label if len(label) <= 34 else label[:32] + "…"
        parts.append(f'<text x="{left - 8}" y="{y + row * 0.62:.1f}" text-anchor="end" class="label">{esc(short)}</text>'
                     f'<rect x="{left}" y="{y + row * 0.15:.1f}" width="{width:.1f}" height="{row * 0.7:.1f}" rx="2" '
                     f'fill="{color}"><title>{esc(label)}: {esc(fmt(v))}</title></rect>'
                     f'<text x="{left + width + 5:.1f}" y="{y + row * 0.62:.1f}" class="tick">{esc(fmt(v))}</text>')  # fmt: skip
    return _svg(title, "".join(parts))
