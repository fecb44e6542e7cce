"""Opening a PostgreSQL session: the URL check, session options, DuckDB-like type loaders, connect failures."""

from __future__ import annotations

import os
import re
import socket
from typing import Any

from cinematch.core.errors import BadInput, CineMatchError
from cinematch.core.secrets import database_target, parse_database_url

try:
    import psycopg
    from psycopg.adapt import Loader
except ImportError:  # the `postgres` extra is optional; open_session explains how to install it
    psycopg = None  # type: ignore[assignment]
    Loader = object  # type: ignore[assignment,misc]

__all__ = ["application_name", "connect_failure", "open_session"]


class _NumericLoader(Loader):
    """``numeric`` → ``int`` when integral (``sum`` of bigint, ``extract``), else ``float``, as DuckDB returns."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        return int(text) if text.lstrip("-").isdigit() else float(text)


class _TextLoader(Loader):
    """``json`` stays text: the library decodes it where DuckDB would have handed it a string."""

    def load(self, data: Any) -> str:
        return bytes(data).decode()


def open_session(url: str, read_only: bool, application_name: str) -> Any:
    """A psycopg connection in autocommit, in UTC, with ``numeric`` and ``json`` read the way DuckDB returns them."""
    if psycopg is None:
        raise CineMatchError(
            "CINEMATCH_DATABASE_URL is set but psycopg is not installed: pip install 'cinematch[postgres]'"
        )
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
    if scheme and scheme.group(1).lower() not in ("postgresql", "postgres"):
        raise BadInput(
            f"CINEMATCH_DATABASE_URL must be a postgresql:// URL, not {scheme.group(1)}://; "
            "unset it to use the DuckDB file in CINEMATCH_HOME"
        )
    target = database_target(parse_database_url(url))  # a malformed string stops here, unquoted (exit 2)
    options = "-c TimeZone=UTC -c DateStyle=ISO,MDY -c extra_float_digits=1"
    if read_only:
        options += " -c default_transaction_read_only=on"
    try:
        pg = psycopg.connect(url, autocommit=True, application_name=application_name[:63], options=options)
    except psycopg.Error as exc:
        # libpq's text echoes connection values (a mis-split password can sit in the host name), so the
        # message is built from the parsed host, port and database and a fixed phrase for the cause
        raise CineMatchError(
            f"cannot connect to PostgreSQL at {target}: {connect_failure(exc)}; "
            "check CINEMATCH_DATABASE_URL and that the server is running"
        ) from None
    pg.adapters.register_loader("numeric", _NumericLoader)
    for name in ("json", "jsonb"):
        pg.adapters.register_loader(name, _TextLoader)
    return pg


# (what libpq says, what we print): the cause of a failed connection, as a fixed phrase
_CONNECT_CAUSES = (
    ("password authentication failed", "password authentication failed"),
    ("no password supplied", "the server asks for a password and none was given"),
    ("pg_hba.conf", "the server does not accept this user from this host (pg_hba.conf)"),
    ("does not exist", "the database or role does not exist"),
    ("connection refused", "connection refused"),
    ("timeout", "connection timed out"),
    ("timed out", "connection timed out"),
    ("could not translate host name", "unknown host name"),
    ("name or service not known", "unknown host name"),
    ("no such file or directory", "no server socket in that directory"),
    ("too many", "the server has too many connections"),
    ("starting up", "the server is starting up"),
    ("shutting down", "the server is shutting down"),
    ("ssl", "SSL negotiation failed"),
)


def connect_failure(exc: Exception) -> str:
    """Why a connection failed, as a fixed phrase (libpq's own text is never passed on: it echoes values)."""
    text = str(exc).lower()
    return next((said for heard, said in _CONNECT_CAUSES if heard in text), f"connection failed ({type(exc).__name__})")


def application_name(command: str) -> str:
    """What ``pg_stat_activity`` shows for a session: the command, host and pid (names a lock's holder)."""
    return f"cinematch {command} @{socket.gethostname()}:{os.getpid()}"
