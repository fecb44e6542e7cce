"""Structured key=value logging on stderr, with durations; values escaped, secrets scrubbed."""

from __future__ import annotations

import logging
import os
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_CONFIGURED = False


_SHORT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if char.isprintable() or char == " ":
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _fmt(value: Any) -> str:
    """One value of a key=value line: quoted when it has spaces, ``=`` or quotes, and never a raw control character.

    CR, LF and other control or invisible characters are escaped (``\\n``, ``\\x1b``, ``\\u2028``), so a value
    taken from a request (a path with ``%0a``) cannot start a forged log line.
    """
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    if text and text.isprintable() and not any(c in text for c in ' ="\\'):
        return text
    return '"' + "".join(_escape(c) for c in text) + '"'


def kv(event: str, **fields: Any) -> str:
    return " ".join([f"event={_fmt(event)}", *(f"{k}={_fmt(v)}" for k, v in fields.items())])


class _ScrubSecrets(logging.Filter):
    """The configured secret values (database password, API keys) never reach the log, whatever logs them."""

    def __init__(self) -> None:
        super().__init__()
        from cinematch.core.secrets import password_of

        names = ("CINEMATCH_DATABASE_URL", "CINEMATCH_API_KEY", "CINEMATCH_TMDB_API_KEY")
        values = [os.environ.get(n) for n in names]
        url = values[0]
        mlflow_uri = os.environ.get("CINEMATCH_MLFLOW_TRACKING_URI") or ""
        mlflow_pw = urllib.parse.urlsplit(mlflow_uri).password if "://" in mlflow_uri else None
        found = [*values, password_of(url) if url else None, mlflow_pw]
        self.secrets = sorted({v for v in found if v}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            from cinematch.core.secrets import scrub

            message = record.getMessage()
            scrubbed = scrub(message, self.secrets)  # percent-encoded and JSON-escaped spellings too
            if scrubbed != message:
                record.msg, record.args = scrubbed, None
        return True


def configure(level: str | None = None) -> None:
    """Send cinematch logs to stderr as ``time level logger event=… key=value`` lines."""
    global _CONFIGURED
    if _CONFIGURED:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(_ScrubSecrets())
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
