"""Keep passwords and API keys out of logs, errors and reports."""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")
_KEYVAL = re.compile(r"(?i)\b(password|api_key|apikey|x-api-key|token)(\s*[=:]\s*)([^\s&'\",]+)")
_BEARER = re.compile(r"(?i)\b(bearer\s+)([A-Za-z0-9._~+/=-]+)")


def redact(text: str) -> str:
    """Replace URL passwords and key=value secrets with ``***``."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    text = _BEARER.sub(lambda m: f"{m[1]}***", text)
    return _KEYVAL.sub(lambda m: f"{m[1]}{m[2]}***", text)
