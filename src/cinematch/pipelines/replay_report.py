"""The replay's HTML: quality per period and policy (retrains marked), cumulative compute, the table and verdict."""

from __future__ import annotations

from html import escape
from itertools import accumulate
from pathlib import Path
from typing import Any

from cinematch.pipelines.html_parts import CSS, fig, html_table
from cinematch.serving.charts import BLUE, GREEN, GREY, ORANGE, PURPLE, RED, fmt_pct, line_chart
from cinematch.storage.files import atomic_write_text

COLORS = (BLUE, ORANGE, GREEN, PURPLE, GREY, RED)
TABLE_COLUMNS = ["policy", "periods", "scored_periods", "mean_ndcg_at_10", "mean_hit_rate_at_10", "mean_rmse",
                 "retrains", "compute_seconds"]  # fmt: skip


def replay_plots(rows: list[dict[str, Any]]) -> list[str]:
    """NDCG@10, hit rate@10 and RMSE per period (one line per policy; a red point is a period that retrained),
    and cumulative compute seconds."""
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    periods = sorted({r["period"] for r in rows})
    start = {r["period"]: r["period_start"] for r in rows}
    labels = [f"{p}: {start[p]:%Y-%m-%d}" for p in periods]
    by = {(r["policy"], r["period"]): r for r in rows}

    def series(key: str) -> list[tuple[str, list[float | None], str]]:
        return [(pol, [by[(pol, p)][key] if (pol, p) in by else None for p in periods], COLORS[i % len(COLORS)])
                for i, pol in enumerate(policies)]  # fmt: skip

    plots = []
    for key, title in (("ndcg_at_10", "NDCG@10 of the served top-10 on the next period"),
                       ("hit_rate_at_10", "Hit rate@10 on the next period"),
                       ("rmse", "RMSE of the champion on the next period (known pairs)")):  # fmt: skip
        plots.append(line_chart(title, labels, series(key)))
    for pol in policies:
        marks = [bool(by[(pol, p)]["retrained"]) if (pol, p) in by else False for p in periods]
        values = [by[(pol, p)]["ndcg_at_10"] if (pol, p) in by else None for p in periods]
        plots.append(line_chart(f"{pol}: NDCG@10 per period (red: retrained after it)", labels,
                                [(pol, values, BLUE)], marks=marks))  # fmt: skip
    cumulative = [(pol, list(accumulate(by[(pol, p)]["seconds"] or 0.0 if (pol, p) in by else 0.0 for p in periods)),
                   COLORS[i % len(COLORS)]) for i, pol in enumerate(policies)]  # fmt: skip
    plots.append(line_chart("Cumulative compute seconds per policy", labels, cumulative))
    return plots


def tradeoff_plot(summary: list[dict[str, Any]], default_threshold: float = 1.0) -> str | None:
    """The drift thresholds' quality/cost trade-off (with --sweep): per drift policy, its mean NDCG@10 and its
    retrains as shares of always-retrain's (of the best and the most among the policies without `always`)."""

    def threshold(policy: str) -> float:  # plain `drift` retrains at the settings' score
        return float(policy.split("@", 1)[1]) if "@" in policy else default_threshold

    drifts = sorted((s for s in summary if s["policy"].split("@")[0] == "drift"), key=lambda s: threshold(s["policy"]))
    if len(drifts) < 2:
        return None
    always = next((s for s in summary if s["policy"] == "always"), None)
    ndcg_ref = (always or max(summary, key=lambda s: s["mean_ndcg_at_10"] or 0))["mean_ndcg_at_10"] or 0.0
    retrain_ref = (always or max(summary, key=lambda s: s["retrains"]))["retrains"]
    ndcg = [s["mean_ndcg_at_10"] / ndcg_ref if ndcg_ref and s["mean_ndcg_at_10"] is not None else None for s in drifts]
    retrains = [s["retrains"] / retrain_ref if retrain_ref else None for s in drifts]
    base = "always-retrain" if always else "the best policy"
    return line_chart(f"Drift threshold trade-off: share of {base}'s NDCG@10 and retrains",
                      [s["policy"] for s in drifts],
                      [("mean NDCG@10", ndcg, BLUE), ("retrains", retrains, ORANGE)], fmt=fmt_pct)  # fmt: skip


def replay_html(
    replay_id: str,
    rows: list[dict[str, Any]],
    summary: list[dict[str, Any]],
    verdict: str,
    default_threshold: float = 1.0,
) -> str:
    """The replay's section: verdict, summary table and plots."""
    tradeoff = tradeoff_plot(summary, default_threshold)
    plots = replay_plots(rows) + ([tradeoff] if tradeoff else [])
    return (f"<h2>Replay {escape(replay_id)}</h2><p><b>{escape(verdict)}</b></p>"
            f"{html_table(summary, TABLE_COLUMNS)}"
            f"<div class=\"grid\">{''.join(map(fig, plots))}</div>")  # fmt: skip


def write_replay_report(
    path: Path,
    replay_id: str,
    rows: list[dict[str, Any]],
    summary: list[dict[str, Any]],
    verdict: str,
    default_threshold: float = 1.0,
) -> Path:
    """A self-contained HTML file for one replay (written atomically)."""
    html = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>CineMatch replay {escape(replay_id)}'
            f"</title><style>{CSS}</style></head><body><h1>CineMatch replay</h1>"
            f"{replay_html(replay_id, rows, summary, verdict, default_threshold)}</body></html>\n")  # fmt: skip
    atomic_write_text(path, html)
    return path
