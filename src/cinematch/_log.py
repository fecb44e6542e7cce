"""Structured key=value logging on stderr, with durations."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_CONFIGURED = False


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    else:
        text = str(value)
    if not text or any(c.isspace() for c in text) or "=" in text or '"' in text:
        return '"' + text.replace('"', '\\"') + '"'
    return text


def kv(event: str, **fields: Any) -> str:
    return " ".join([f"event={_fmt(event)}", *(f"{k}={_fmt(v)}" for k, v in fields.items())])


def configure(level: str | None = None) -> None:
    """Send cinematch logs to stderr as ``time level logger event=… key=value`` lines."""
    global _CONFIGURED
    if _CONFIGURED:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("cinematch")
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("CINEMATCH_LOG_LEVEL", "WARNING"))
    root.propagate = False
    _CONFIGURED = True


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith("cinematch") else f"cinematch.{name}")


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, kv(event, **fields))


@contextmanager
def timed(logger: logging.Logger, event: str, **fields: Any) -> Iterator[dict[str, Any]]:
    """Log ``event`` with its duration; the caller may add counts to the yielded dict."""
    extra: dict[str, Any] = {}
    start = time.perf_counter()
    try:
        yield extra
    finally:
        log_event(logger, event, **fields, **extra, seconds=round(time.perf_counter() - start, 4))
