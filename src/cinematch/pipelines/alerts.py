"""Alert events posted to ``CINEMATCH_ALERT_WEBHOOK``: one client for the DAGs, the CLI and ``simulate``."""

# Every event is one JSON object:
#   {"event": <type>, "status": "failed" | "success" | "info", "text": <one line>, "source": "airflow" | "cli" |
#    "simulate", "sent_at": <UTC ISO time>, ...details}
# Types: failure (a command or task failed), gate_failed (a data-quality gate stopped a layer or a run check
# failed), retrain_decided (a drift check decided to retrain), champion_promoted, promotion_refused (a newly
# trained version was or was not made champion), success (an Airflow run ended green).
#
# Posting never raises and gives up after TIMEOUT_SECONDS without an answer (urllib's socket timeout): an alert
# is a side effect, and a broken webhook must not fail, or stall, the work it reports on. Every string of the payload is scrubbed of the configured secrets
# (database URL and password, API key, TMDB key) and of anything shaped like a credential. This module imports
# nothing heavy, so DAG files may import it at parse time.

from __future__ import annotations

import json
import logging
import urllib.parse
import urllib.request
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cinematch.core.log import get_logger, log_event
from cinematch.core.secrets import configured_secrets

if TYPE_CHECKING:
    from cinematch.core.settings import Settings

log = get_logger(__name__)

FAILURE = "failure"
GATE_FAILED = "gate_failed"
RETRAIN_DECIDED = "retrain_decided"
CHAMPION_PROMOTED = "champion_promoted"
PROMOTION_REFUSED = "promotion_refused"
SUCCESS = "success"
EVENTS = (FAILURE, GATE_FAILED, RETRAIN_DECIDED, CHAMPION_PROMOTED, PROMOTION_REFUSED, SUCCESS)
_STATUS = {FAILURE: "failed", GATE_FAILED: "failed", SUCCESS: "success"}  # the rest: "info"

TIMEOUT_SECONDS = 3.0
_TEXT_LIMIT = 1000
_ALERTED = "_cinematch_alerted"  # set on an exception once it was posted, so an outer layer does not post it again


# --- scrubbing -----------------------------------------------------------------------------------------------


def _scrub_text(text: str, secrets: list[str]) -> str:
    from cinematch.core.secrets import redact

    for secret in secrets:
        text = text.replace(secret, "***")
    return redact(text)


def scrub(value: Any, secrets: list[str]) -> Any:
    """``value`` (a JSON-like tree) with every string scrubbed; other leaves made JSON-plain."""
    if isinstance(value, dict):
        return {str(k): scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [scrub(v, secrets) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        value = str(value)
    return _scrub_text(value if isinstance(value, str) else str(value), secrets)


def safe_text(text: str, settings: Settings | None = None) -> str:
    """``text`` scrubbed of the configured secrets and credential-shaped parts (for a log line beside the alert)."""
    try:
        if settings is None:
            from cinematch.core.settings import get_settings

            settings = get_settings()
        secrets = configured_secrets(settings)
    except Exception:  # a bad setting must not hide the message: the shape-based redaction still applies
        secrets = []
    return _scrub_text(text, secrets)


# --- posting -------------------------------------------------------------------------------------------------


def _send(url: str, payload: dict[str, Any], timeout: float) -> bool:
    body = json.dumps(payload).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return bool(200 <= response.status < 300)


def post(
    event: str,
    text: str,
    source: str,
    settings: Settings | None = None,
    timeout: float = TIMEOUT_SECONDS,
    **details: Any,
) -> bool:
    """Post one event to the configured webhook; True when it was accepted (2xx).

    Without a webhook nothing is sent (False). Any failure (no listener, timeout, HTTP error, even a bad
    setting) is logged as ``alert_failed`` with the error type and returns False: it never raises for those.
    An unknown ``event`` is a programming error and raises ``ValueError``.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown alert event {event!r}; expected one of {', '.join(EVENTS)}")
    try:
        if settings is None:
            from cinematch.core.settings import get_settings

            settings = get_settings()
        url = settings.alert_webhook_url
        if not url:
            return False
        secrets = configured_secrets(settings)
        one_line = " ".join(str(text).split())[:_TEXT_LIMIT]
        payload = {"event": event, "status": _STATUS.get(event, "info"), "text": one_line, "source": source,
                   "sent_at": datetime.now(UTC).isoformat(), **details}  # fmt: skip
        sent = _send(url, scrub(payload, secrets), timeout)
        log_event(log, "alert_sent" if sent else "alert_refused", logging.INFO if sent else logging.WARNING,
                  alert=event, source=source)  # fmt: skip
        return sent
    except Exception as exc:  # an alert is a side effect: never fatal
        # the webhook URL may carry a token (Slack, Teams): log the error's type and reason, never the URL
        reason = getattr(exc, "reason", None) or getattr(exc, "code", None) or type(exc).__name__
        log_event(log, "alert_failed", logging.WARNING, alert=event, source=source, error=type(exc).__name__,
                  reason=str(reason)[:100])  # fmt: skip
        return False


# --- events --------------------------------------------------------------------------------------------------


def exception_event(exc: BaseException) -> str:
    """``gate_failed`` for a quality gate (``QualityGateFailed``), ``failure`` for anything else."""
    from cinematch.core.errors import QualityGateFailed

    return GATE_FAILED if isinstance(exc, QualityGateFailed) else FAILURE


def post_exception(
    exc: BaseException, source: str, where: str, settings: Settings | None = None, **details: Any
) -> bool:
    """Post a failure (or gate_failed) for ``exc`` once: an exception already posted is not posted again.

    ``where`` names what failed (``cinematch etl``, ``simulate week 2``, ``medallion_pipeline.validate_run``).
    """
    if getattr(exc, _ALERTED, False):
        return False
    event = exception_event(exc)
    message = " ".join(str(exc).split())[:300]
    text = f"cinematch {where} failed: {type(exc).__name__}: {message}"
    sent = post(event, text, source, settings, where=where, error_type=type(exc).__name__, error=message, **details)
    setattr(exc, _ALERTED, True)  # every exception instance takes attributes
    return sent


def training_event(result: Mapping[str, Any] | None) -> str | None:
    """``champion_promoted`` or ``promotion_refused`` for a training result; None when nothing was trained.

    Accepts the library's result (``promotion`` a dict) and an Airflow reference (``promotion`` its decision).
    """
    if not result or result.get("skipped") or result.get("version") is None or "promoted" not in result:
        return None
    return CHAMPION_PROMOTED if result["promoted"] else PROMOTION_REFUSED


def post_training(result: Mapping[str, Any] | None, source: str, settings: Settings | None = None) -> bool:
    """Post the promotion outcome of a training result (nothing for a skipped or missing one)."""
    event = training_event(result)
    if event is None or result is None:
        return False
    promotion = result.get("promotion")
    decision = promotion.get("decision") if isinstance(promotion, dict) else promotion
    reason = promotion.get("reason") if isinstance(promotion, dict) else None
    rmse = result.get("rmse")
    verb = "promoted to champion" if event == CHAMPION_PROMOTED else "not promoted"
    text = (f"cinematch model {result['version']} {verb}" + (f" (rmse {rmse:.4f})" if isinstance(rmse, float) else "")
            + (f": {reason}" if reason else "") + f"; champion {result.get('champion_version')}")  # fmt: skip
    return post(event, text, source, settings, version=result["version"], rmse=rmse, decision=decision,
                reason=reason, champion_version=result.get("champion_version"),
                merged_batches=result.get("merged_batches"))  # fmt: skip


def post_drift(decision: dict[str, Any] | None, source: str, settings: Settings | None = None) -> bool:
    """Post ``retrain_decided`` when a drift check decided to retrain (no event for any other decision)."""
    if not decision or not decision.get("should_retrain"):
        return False
    score = decision.get("score")
    text = (f"cinematch drift check decided to retrain ({decision.get('decision')}"
            + (f", score {score:.3f}" if isinstance(score, float) else "") + ")"
            + (f" on batches {', '.join(decision['batch_ids'])}" if decision.get("batch_ids") else ""))  # fmt: skip
    return post(RETRAIN_DECIDED, text, source, settings, decision=decision.get("decision"), score=score,
                report_id=decision.get("report_id"), model_version=decision.get("model_version"),
                batch_ids=decision.get("batch_ids"))  # fmt: skip


# --- run outcomes ----------------------------------------------------------------------------------------------


def announce_training(ref: dict[str, Any]) -> dict[str, Any]:
    """Post ``champion_promoted`` or ``promotion_refused`` for a training task's result; returns it unchanged."""
    post_training(ref, "airflow")
    return ref


def notify(
    pipeline: str, summary: dict[str, Any] | None, run_id: str | None = None, published: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Log the success of a run and post it (event ``success``) to ``CINEMATCH_ALERT_WEBHOOK`` when one is set."""
    summary = summary or {}
    text = (f"cinematch {pipeline} succeeded (run {run_id}): {summary.get('n_checks', 0)} checks passed"
            + "".join(f", {k} {summary[k]}" for k in ("batch_ids", "inserted", "as_of", "model_version",
                                                      "drift_decision") if summary.get(k) not in (None, []))
            + (f", published {published['views_version']}" if published else ""))  # fmt: skip
    log_event(log, "pipeline_succeeded", pipeline=pipeline, run_id=run_id, message=text)
    sent = post(SUCCESS, text, "airflow", pipeline=pipeline, run_id=run_id, summary=summary,
                       views_version=(published or {}).get("views_version"))  # fmt: skip
    return {"pipeline": pipeline, "status": "success", "message": text, "webhook": sent}
