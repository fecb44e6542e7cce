"""The HTML pieces the reports share: the style sheet, a captioned figure and a plain table."""

from __future__ import annotations

import re
from html import escape
from typing import Any

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1340px;color:#222}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(640px,1fr));gap:14px}
svg.plot{width:100%;height:auto;background:#fff;border:1px solid #e3e3e3;border-radius:6px}
svg text{font-family:system-ui,sans-serif} .tick{font-size:11px;fill:#555} .label{font-size:11px;fill:#333}
.legend{font-size:11px;fill:#333} .axis{stroke:#bbb} .grid-line{stroke:#eee}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0} td,th{border:1px solid #ddd;padding:3px 7px;text-align:left}
th{background:#f4f4f4} figure{margin:0} figcaption{font-weight:600;margin:0 0 4px} .fail{color:#b00;font-weight:600} .ok{color:#2a7a2a} .muted{color:#777}
"""


def fig(svg: str) -> str:
    """The SVG's <title> as a visible caption above the plot."""
    m = re.search(r"<title>(.*?)</title>", svg)
    return f"<figure><figcaption>{m.group(1) if m else ''}</figcaption>{svg}</figure>"


def html_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c)
            text = f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))
            cls = ' class="fail"' if c == "passed" and v is False else (' class="ok"' if c == "passed" else "")
            cells.append(f"<td{cls}>{escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"
