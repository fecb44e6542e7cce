"""`cinematch report`: one self-contained HTML file (SVG plots inline) with drift, quality and model history."""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from cinematch.core.results import Result
from cinematch.core.settings import Settings
from cinematch.drift.histograms import HALF_STAR_BINS
from cinematch.pipelines.html_parts import CSS, fig, html_table
from cinematch.recommender.registry import same_rows
from cinematch.serving.charts import AMBER, BLUE, GREEN, ORANGE, RED, grouped_bars, hbars, line_chart
from cinematch.storage.audit import utcnow
from cinematch.storage.files import atomic_write_text
from cinematch.storage.protocol import Warehouse
from cinematch.storage.warehouse import query_rows

BIN_LABELS = [f"{b:g}" for b in HALF_STAR_BINS]


def _tables(con: Warehouse) -> set[str]:
    return {r[0] for r in con.execute("select table_schema || '.' || table_name from information_schema.tables")
            .fetchall()}  # fmt: skip


def _drift_section(con: Warehouse, settings: Settings) -> tuple[list[str], list[dict[str, Any]]]:
    reports = query_rows(con, "select * from ops.drift_reports order by checked_at")
    plots = []
    labels = [f"{i + 1}: {r['checked_at']:%m-%d %H:%M}" for i, r in enumerate(reports)]
    plots.append(line_chart(
        "Drift score per check vs thresholds", labels,
        [("score", [r["score"] for r in reports], BLUE)],
        hlines=[("retrain", settings.drift_retrain_score, RED), ("warning", settings.drift_warning_score, AMBER)],
        marks=[r["should_retrain"] for r in reports],
    ))  # fmt: skip
    for i, r in enumerate(reports):
        details = json.loads(r["details"]) if isinstance(r["details"], str) else (r["details"] or {})
        ref, cur = details.get("reference_histogram"), details.get("current_histogram")
        if not ref or not cur:
            continue
        ref_share = [v / max(sum(ref), 1) for v in ref]
        cur_share = [v / max(sum(cur), 1) for v in cur]
        plots.append(grouped_bars(
            f"Check {i + 1} ({r['decision']}): rating distribution, reference vs current",
            BIN_LABELS, [("reference", ref_share, BLUE), (f"current (n={r['n_current']:,})", cur_share, ORANGE)],
            fmt=lambda v: f"{v * 100:.0f}%",
        ))  # fmt: skip
    rows = [{"check": i + 1, "checked_at": str(r["checked_at"])[:19], "batches": ", ".join(json.loads(r["batch_ids"])),
             "n_current": r["n_current"], "kl": r["kl_divergence"], "mean_shift": r["mean_shift"],
             "median_shift": r["median_shift"], "psi": r["psi"], "score": r["score"],
             "rmse_degradation": r["model_degradation"], "decision": r["decision"]}
            for i, r in enumerate(reports)]  # fmt: skip
    return plots, rows


def _model_section(con: Warehouse) -> tuple[list[str], list[dict[str, Any]]]:
    from cinematch.recommender import registry

    models = list(reversed(registry.list_models(con))) if "ops.model_registry" in _tables(con) else []
    labels = [m["version"].removeprefix("version_")[4:15] for m in models]
    marks = [m["is_champion"] for m in models]
    plots = [
        line_chart("RMSE per model version (champion marked red)", labels,
                   [("rmse", [m["metrics"].get("rmse") for m in models], BLUE),
                    ("mae", [m["metrics"].get("mae") for m in models], ORANGE)], marks=marks),
        line_chart("Ranking metrics at 10 per model version", labels,
                   [("ndcg@10", [m["metrics"].get("ndcg_at_10") for m in models], GREEN),
                    ("precision@10", [m["metrics"].get("precision_at_10") for m in models], ORANGE),
                    ("recall@10", [m["metrics"].get("recall_at_10") for m in models], BLUE)], marks=marks),
    ]  # fmt: skip
    rows = [{"version": m["version"], "status": m["status"], "champion": m["is_champion"],
             "rmse": m["metrics"].get("rmse"), "mae": m["metrics"].get("mae"),
             "precision_at_10": m["metrics"].get("precision_at_10"), "ndcg_at_10": m["metrics"].get("ndcg_at_10"),
             **same_rows(m["promotion"]), "batches": ", ".join(m["batch_ids"]),
             "promotion": (m["promotion"] or {}).get("reason")}
            for m in reversed(models)]  # fmt: skip
    return plots, rows


def _buffer_section(con: Warehouse) -> str:
    rows = query_rows(
        con,
        """select batch_id, record_count, sum(record_count) over (order by ingestion_date, batch_id) as total
           from bronze.ingestion_metadata where kind = 'ratings' and status = 'completed'
           order by ingestion_date, batch_id""",
    )
    return line_chart("Buffer growth: ratings loaded (cumulative) per batch", [r["batch_id"] for r in rows],
                      [("cumulative ratings", [float(r["total"]) for r in rows], BLUE)],
                      bars=("batch size", [float(r["record_count"]) for r in rows], ORANGE))  # fmt: skip


def _quality_rows(con: Warehouse) -> list[dict[str, Any]]:
    """Every check of the newest ETL run."""
    runs = query_rows(
        con,
        """select run_id, step, status, details from ops.pipeline_runs where pipeline = 'etl'
           and run_id = (select run_id from ops.pipeline_runs where pipeline = 'etl' order by started_at desc limit 1)
           order by started_at""",
    )
    out = []
    for run in runs:
        details = json.loads(run["details"]) if isinstance(run["details"], str) else (run["details"] or {})
        for c in details.get("checks", []):
            out.append({"layer": run["step"], "table": c["table"], "check": c["check"], "severity": c["severity"],
                        "passed": c["passed"], "offending_rows": c["offending_rows"]})  # fmt: skip
    return out


def _trending(con: Warehouse) -> str:
    if "gold.trending_movies" not in _tables(con):
        return hbars("Top trending movies (30 days)", [], [])
    rows = query_rows(con, """select title, trending_score from gold.trending_movies where "window" = '30d'
                              order by trending_rank limit 10""")  # fmt: skip
    return hbars("Top trending movies (30 days): trending score", [r["title"] for r in rows],
                 [r["trending_score"] for r in rows])  # fmt: skip


def _replay_section(con: Warehouse, settings: Settings) -> str:
    """The latest `cinematch replay`: its verdict, the policies side by side and the plots per period."""
    from cinematch.pipelines.replay_report import replay_html
    from cinematch.pipelines.replay_run import summarize, verdict
    from cinematch.storage.replay_rows import latest_replay

    rows = latest_replay(con)
    if not rows:
        return ""
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    summary = [summarize(p, [r for r in rows if r["policy"] == p]) for p in policies]
    return replay_html(rows[0]["replay_id"], rows, summary, verdict(summary), settings.drift_retrain_score)


def write_report(con: Warehouse, settings: Settings, path: Path | None = None) -> Path:
    """Write the HTML report (atomically) and return its path."""
    tables = _tables(con)
    drift_plots, drift_rows = _drift_section(con, settings) if "ops.drift_reports" in tables else ([], [])
    model_plots, model_rows = _model_section(con)
    quality = _quality_rows(con) if "ops.pipeline_runs" in tables else []
    failed = sum(1 for q in quality if not q["passed"])
    generated = utcnow()
    html = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>CineMatch report</title>
<style>{CSS}</style></head><body>
<h1>CineMatch report</h1><div class="muted">generated {generated:%Y-%m-%d %H:%M:%S} UTC from {escape(str(settings.home_dir))}</div>
<h2>Drift</h2><div class="grid">{"".join(map(fig, drift_plots)) or "<p>no drift checks yet</p>"}</div>
{html_table(drift_rows, list(drift_rows[0])) if drift_rows else ""}
<h2>Models</h2><div class="grid">{"".join(map(fig, model_plots))}{fig(_trending(con))}</div>
{html_table(model_rows, list(model_rows[0])) if model_rows else "<p>no models yet</p>"}
<h2>Buffer</h2><div class="grid">{fig(_buffer_section(con))}</div>
<h2>Quality gates (latest ETL run)</h2><p>{len(quality)} checks, {failed} failing</p>
{html_table(quality, ["layer", "table", "check", "severity", "passed", "offending_rows"]) if quality else ""}
{_replay_section(con, settings) if "ops.replay_periods" in tables else ""}
</body></html>
"""
    path = path or settings.reports_dir / f"report_{generated:%Y%m%dT%H%M%S}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, html)
    atomic_write_text(path.parent / "latest.html", html)
    return path


@dataclass(eq=False)
class ReportFile(Result):
    """`cinematch report`: the HTML file written and its size."""

    report: str
    bytes: int


def report_doc(path: Path) -> ReportFile:
    return ReportFile(report=str(path), bytes=path.stat().st_size)
