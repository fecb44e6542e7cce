"""Keep passwords and API keys out of logs, errors, reports and stored payloads."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable
from typing import TYPE_CHECKING

from cinematch.core.errors import BadInput

if TYPE_CHECKING:
    from cinematch.core.settings import Settings

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")
_KEYVAL = re.compile(r"(?i)\b(password|api_key|apikey|x-api-key|token)(\s*[=:]\s*)([^\s&'\",]+)")
_BEARER = re.compile(r"(?i)\b(bearer\s+)([A-Za-z0-9._~+/=-]+)")

# What a host, port or database name of a well-formed connection string looks like. A part outside these
# shapes is what a mis-parsed password leaves behind (`postgresql://u:p@ss@h/db` gives host `ss@h`), so such
# a part is never printed.
_HOST = re.compile(r"[A-Za-z0-9._:%-]{1,255}|/[^\x00-\x1f\x7f@,]{0,1023}")  # a name, an address or a socket folder
_PORT = re.compile(r"[0-9]{1,5}")
_DBNAME = re.compile(r"[A-Za-z0-9_.$-]{1,63}")
# A URI whose path (before any `?`) holds an `@`: a password with an unencoded `/` ends the authority early,
# and libpq reads its head as host and port (`postgresql://u:1234/56@h/db` gives port 1234)
_URI_AT_IN_PATH = re.compile(r"(?i)postgres(?:ql)?://[^/?]*/[^?]*@")
MALFORMED_URL = (
    "CINEMATCH_DATABASE_URL is not a well-formed PostgreSQL URL or key=value string; percent-encode special "
    "characters of the password (@ as %40, / as %2F, space as %20) or quote it in a key=value string"
)


def redact(text: str) -> str:
    """Replace URL passwords and key=value secrets with ``***`` (a last line of defence for free text)."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    text = _BEARER.sub(lambda m: f"{m[1]}***", text)
    return _KEYVAL.sub(lambda m: f"{m[1]}{m[2]}***", text)


def _either_case(hex_digits: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in hex_digits)


def secret_pattern(secret: str) -> re.Pattern[str]:
    """A pattern for every spelling a secret takes in echoed text: as is, percent-encoded (any character, hex in
    either case, ``+`` for a space) and JSON-escaped (``\\/``, ``\\"``, ``\\uXXXX``), mixed freely."""
    parts = []
    for char in secret:
        spellings = [re.escape(char), "".join(f"%{_either_case(f'{b:02X}')}" for b in char.encode())]
        escaped = json.dumps(char)[1:-1]  # \uXXXX (a surrogate pair beyond the BMP) for what is not ASCII
        if escaped.startswith("\\u"):
            spellings.append("".join(r"\\u" + _either_case(h) for h in escaped.split("\\u")[1:]))
        elif escaped != char:
            spellings.append(re.escape(escaped))
        spellings += [r"\+"] if char == " " else [r"\\/"] if char == "/" else []
        parts.append(f"(?:{'|'.join(spellings)})")
    return re.compile("".join(parts))


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every occurrence of each known secret value, in any of its spellings, replaced by ``***``."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = secret_pattern(secret).sub("***", text)
    return text


def _conninfo(url: str) -> dict[str, str] | None:
    """libpq's parse of a URI or key=value string; None when it does not parse."""
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:  # the `postgres` extra is optional; PgConnection says how to install it
        raise BadInput(
            "CINEMATCH_DATABASE_URL is set but psycopg is not installed: pip install 'cinematch[postgres]'"
        ) from None
    try:
        return {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    except Exception:  # psycopg's message quotes the string, password included
        return None


def parse_database_url(url: str) -> dict[str, str]:
    """The connection parameters of a libpq URI or key=value string, as libpq parses them.

    Raises :class:`BadInput` (without quoting the string: libpq's own parse errors echo parts of it) when it
    does not parse, or when its host or port has a shape no real one has.
    """
    params = _conninfo(url)
    if params is None or _URI_AT_IN_PATH.match(url.strip()):
        raise BadInput(MALFORMED_URL)
    for key, shape in (("host", _HOST), ("hostaddr", _HOST), ("port", _PORT)):
        if key in params and not all(shape.fullmatch(v) for v in params[key].split(",") if v):
            raise BadInput(MALFORMED_URL)
    return params


def database_target(params: dict[str, str]) -> str:
    """Parsed connection parameters as a printable URL: user, hosts, ports and database; the password as ``***``.

    A part that does not have the shape of its kind (or holds the password) is shown as ``?``.
    """
    password = params.get("password", "")

    def part(key: str, shape: re.Pattern[str], default: str = "") -> str:
        values = params.get(key, default).split(",")
        ok = all(not v or (shape.fullmatch(v) and not (len(password) >= 4 and password in v)) for v in values)
        return ",".join(values) if ok else "?"

    hosts = part("host", _HOST) if "host" in params else part("hostaddr", _HOST)
    sockets = [h for h in hosts.split(",") if h.startswith("/")]
    netloc = ",".join(f"[{h}]" if ":" in h else h for h in hosts.split(",") if not h.startswith("/"))
    port = part("port", _PORT)
    if port and netloc and "," not in port:
        netloc = f"{netloc}:{port}"
    elif port and netloc:
        netloc = ",".join(f"{h}:{p}" for h, p in zip(netloc.split(","), port.split(","), strict=False))
    user = part("user", _DBNAME)
    auth = f"{user}{':***' if password else ''}@" if user or password else ""
    service = part("service", _DBNAME)
    query = "&".join([*(f"host={h}" for h in sockets), *([f"port={port}"] if sockets and port else []),
                      *([f"service={service}"] if service else [])])  # fmt: skip
    return f"postgresql://{auth}{netloc}/{part('dbname', _DBNAME)}{'?' + query if query else ''}"


def describe_database_url(url: str) -> str:
    """A printable form of a PostgreSQL connection string (URL or key=value), its password as ``***``."""
    try:
        return database_target(parse_database_url(url))
    except BadInput:
        return "postgresql://? (a malformed CINEMATCH_DATABASE_URL)"


def password_of(url: str) -> str | None:
    """The password of a connection string as libpq reads it, to scrub it from free text; None when none."""
    try:
        params = _conninfo(url)
    except BadInput:
        return None
    return (params or {}).get("password") or None


def configured_secrets(settings: Settings) -> list[str]:
    """The configured secrets as they may appear in text: raw, percent-encoded, and the URL's own password."""
    values: list[str | None] = [
        s.get_secret_value() if s is not None else None
        for s in (settings.database_url, settings.api_key, settings.tmdb_api_key)
    ]
    url = values[0]
    if url:
        values.append(password_of(url))
        values.append(urllib.parse.urlsplit(url).password if "://" in url else None)
    mlflow_uri = settings.mlflow_tracking_uri.get_secret_value() if settings.mlflow_tracking_uri else ""
    values.append(urllib.parse.urlsplit(mlflow_uri).password if "://" in mlflow_uri else None)
    found = {v for v in values if v and len(v) >= 3}
    found |= {urllib.parse.quote(v, safe="") for v in found} | {urllib.parse.quote_plus(v) for v in found}
    return sorted(found, key=len, reverse=True)
