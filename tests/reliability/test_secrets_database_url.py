"""The database password is never printed, whatever shape CINEMATCH_DATABASE_URL has (issue 16, point 7).

Every shape libpq accepts (URI with percent-encoding or a ``?password=`` parameter, host lists, socket folders,
key=value with quoted and escaped values) and two it mis-reads (an unencoded ``@`` or space in the password),
through the CLI, against a port nothing listens on and against a real server with a wrong password.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from tests.reliability._homes import env_for

pytestmark = pytest.mark.reliability

USER = "cm_app"
PASSWORD = "Kq9zR@Xy7wT pLm4'Qd8s"  # an @, a space and a quote: each breaks a naive URL or DSN
WRONG = "Vb3nM@Hj6kL wZx1'Rt5y"
PLAIN = "Kq9zR@Xy7wT"  # the part without a space (an unencoded space is refused before the @ is)


def _fragments(password: str) -> list[str]:
    """The password and each of its runs of letters and digits: a mis-split password leaks them one by one."""
    return [password, *re.findall(r"[A-Za-z0-9]{4,}", password)]


def _kv_escape(value: str) -> str:
    """A key=value value with backslash escapes (libpq takes them quoted or not)."""
    return re.sub(r"([\\' ])", r"\\\1", value)


def _kv_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


Shape = Callable[[str, int, str, str], str]
# name -> (build(host, port, password, dbname), exit code for a right password: 0, or 2 when libpq mis-reads it)
SHAPES: dict[str, tuple[Shape, int]] = {
    "uri, @ not encoded": (lambda h, p, pw, db: f"postgresql://{USER}:{PLAIN if pw == PASSWORD else 'Vb3nM@Hj6kL'}@{h}:{p}/{db}", 2),
    "uri, space not encoded": (lambda h, p, pw, db: f"postgresql://{USER}:{pw.replace(chr(39), '')}@{h}:{p}/{db}", 2),
    "uri, percent-encoded": (lambda h, p, pw, db: f"postgresql://{USER}:{quote(pw, safe='')}@{h}:{p}/{db}", 0),
    "uri, ?password=": (lambda h, p, pw, db: f"postgres://{USER}@{h}:{p}/{db}?sslmode=disable&password={quote(pw, safe='')}&connect_timeout=5", 0),
    "uri, host list": (lambda h, p, pw, db: f"postgresql://{USER}:{quote(pw, safe='')}@{h}:{p},{h}:{p}/{db}", 0),
    "uri, ipv4 in ?host=": (lambda h, p, pw, db: f"postgresql:///{db}?host={h}&port={p}&user={USER}&password={quote(pw, safe='')}", 0),
    "key=value, quoted": (lambda h, p, pw, db: f"host={h} port={p} user={USER} password={_kv_quote(pw)} dbname={db}", 0),
    "key=value, spaced": (lambda h, p, pw, db: f"  password = {_kv_quote(pw)}  host = {h}  port = {p}  user = {USER}  dbname = '{db}' ", 0),
    "key=value, escaped": (lambda h, p, pw, db: f"host={h} port={p} user={USER} dbname={db} password={_kv_escape(pw)}", 0),
}  # fmt: skip


def _run(home: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cinematch", *args], env=env_for(home, CINEMATCH_DATABASE_URL=url),
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def _assert_secret_free(proc: subprocess.CompletedProcess, *passwords: str) -> None:
    printed = proc.stdout + proc.stderr
    for fragment in (f for pw in passwords for f in _fragments(pw)):
        assert fragment not in printed, f"{fragment!r} printed: {printed[-600:]}"
        assert quote(fragment, safe="") not in printed


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("shape", list(SHAPES))
def test_unreachable_server_never_prints_the_password(shape: str, tmp_path: Path) -> None:
    build, right = SHAPES[shape]
    port = _closed_port()
    url = build("127.0.0.1", port, PASSWORD, "cinematch")
    for args in (("status",), ("sql", "select 1"), ("etl", "--debug"), ("init", "--json")):
        proc = _run(tmp_path / "home", url, *args)
        _assert_secret_free(proc, PASSWORD)
        assert proc.returncode == (2 if right == 2 else 1), (args, proc.stderr)
        if right == 2:  # mis-read by libpq: said so, without quoting it
            assert "is not a well-formed PostgreSQL URL" in proc.stderr
        else:  # where it tried, from the parsed host, port and database, and why it failed
            assert f"127.0.0.1:{port}" in proc.stderr and "/cinematch" in proc.stderr
            assert "connection refused" in proc.stderr


def test_unencoded_slash_in_the_password_is_refused_without_quoting_it(tmp_path: Path) -> None:
    """libpq reads `u:4821/Xy7wTq@h` as host `u`, port 4821 and database `Xy7wTq@h/...`: nothing of it is printed."""
    url = f"postgresql://{USER}:4821/Xy7wTq@127.0.0.1:{_closed_port()}/cinematch"
    for args in (("status",), ("sql", "select 1")):
        proc = _run(tmp_path / "home", url, *args)
        assert "4821" not in proc.stdout + proc.stderr and "Xy7wTq" not in proc.stdout + proc.stderr, proc.stderr
        assert proc.returncode == 2 and "is not a well-formed PostgreSQL URL" in proc.stderr, proc.stderr


def test_socket_folder_and_every_command(tmp_path: Path) -> None:
    """A unix-socket URL (no server there), and every command of the CLI with a quoted key=value DSN."""
    sockets = tmp_path / "no server here"
    url = f"postgresql://{USER}:{quote(PASSWORD, safe='')}@/cinematch?host={quote(str(sockets))}"
    proc = _run(tmp_path / "home", url, "status")
    _assert_secret_free(proc, PASSWORD)
    assert proc.returncode == 1 and "no server socket in that directory" in proc.stderr
    dsn = SHAPES["key=value, quoted"][0]("127.0.0.1", _closed_port(), PASSWORD, "cinematch")
    (tmp_path / "r.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,1700000000\n")
    commands = [("init",), ("status", "--debug"), ("ingest", str(tmp_path / "r.csv")), ("etl",), ("train",),
                ("drift",), ("publish",), ("report",), ("models", "list"), ("models", "rollback"), ("sql", "select 1")]  # fmt: skip
    for args in commands:
        proc = _run(tmp_path / "home", dsn, *args)
        _assert_secret_free(proc, PASSWORD)
        assert proc.returncode == 1, (args, proc.stderr)
        assert "Traceback" not in proc.stderr or "--debug" in args


@pytest.fixture(scope="module")
def app_role(pg_server: str) -> tuple[str, int]:
    """A role whose password has an @, a space and a quote, owning a fresh database; returns (host, port)."""
    with psycopg.connect(pg_server, autocommit=True) as con:
        con.execute(sql.SQL("create role {} login password {}").format(sql.Identifier(USER), sql.Literal(PASSWORD)))
        con.execute(sql.SQL("create database cm_secrets owner {}").format(sql.Identifier(USER)))
    params = conninfo_to_dict(pg_server)
    return str(params["host"]), int(params["port"])


@pytest.mark.postgres
@pytest.mark.parametrize("shape", list(SHAPES))
def test_real_server_right_and_wrong_password(app_role: tuple[str, int], shape: str, tmp_path: Path) -> None:
    host, port = app_role
    build, right = SHAPES[shape]
    ok = _run(tmp_path / "home", build(host, port, PASSWORD, "cm_secrets"), "status", "--json")
    _assert_secret_free(ok, PASSWORD)
    assert ok.returncode == right, ok.stderr  # every well-formed shape reaches the server and logs in
    wrong = _run(tmp_path / "home", build(host, port, WRONG, "cm_secrets"), "status")
    _assert_secret_free(wrong, PASSWORD, WRONG)
    if right == 0:
        assert wrong.returncode == 1 and "password authentication failed" in wrong.stderr, wrong.stderr
        assert f"{host}:{port}" in wrong.stderr and "/cm_secrets" in wrong.stderr
    else:
        assert wrong.returncode == 2
