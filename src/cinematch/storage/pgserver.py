"""A throwaway local PostgreSQL server for tests, benchmarks and trying CineMatch on Postgres.

    python -m cinematch.storage.pgserver          # prints CINEMATCH_DATABASE_URL=...; Ctrl-C stops and deletes it

The server runs from the PostgreSQL binaries on this machine (``/usr/lib/postgresql/<N>/bin``, or
``CINEMATCH_PG_BINDIR``), listens on 127.0.0.1 only, and keeps its data in a fresh temp folder that ``stop()``
removes. PostgreSQL refuses to run as root, so as root every server command runs as the ``postgres`` OS user
on a folder it owns.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SUPERUSER = "cinematch"
_CANDIDATE_BINDIRS = tuple(f"/usr/lib/postgresql/{v}/bin" for v in (15, 16, 17, 14))


class ServerUnavailable(RuntimeError):
    """No PostgreSQL binaries here, or the server did not start."""


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: ``CINEMATCH_PG_BINDIR`` when set (only it), else the usual places."""
    chosen = os.environ.get("CINEMATCH_PG_BINDIR", "")
    candidates = [chosen] if chosen else list(_CANDIDATE_BINDIRS)
    on_path = shutil.which("pg_ctl")
    if on_path and not chosen:
        candidates.append(str(Path(on_path).parent))
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(_as_server_user(cmd), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ServerUnavailable(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}")


def start_local_server(
    base_dir: Path | None = None, *, durable: bool = False, password: str | None = None
) -> tuple[str, Callable[[], None]]:
    """Start a private PostgreSQL server and return ``(url, stop)``.

    Args:
        base_dir: where to keep the data folder. Ignored when running as root: the ``postgres`` user must be
            able to reach it, so a fresh folder under the system temp dir is used instead.
        durable: keep PostgreSQL's crash-safety settings (fsync, full-page writes). The default turns them off,
            which is safe for throwaway test data (a crash loses the whole server anyway) and much faster.
        password: the superuser's password (default: random). It is part of the returned URL.

    Returns:
        ``postgresql://cinematch:<password>@127.0.0.1:<port>/postgres`` and a function that stops the server
        and deletes its data (idempotent).
    """
    bindir = find_bindir()
    if bindir is None:
        raise ServerUnavailable(
            "no PostgreSQL binaries found (looked in CINEMATCH_PG_BINDIR and /usr/lib/postgresql/<N>/bin); "
            "install postgresql-15 or set CINEMATCH_PG_BINDIR"
        )
    root_user = os.geteuid() == 0
    if root_user or base_dir is None:
        root = Path(tempfile.mkdtemp(prefix="cinematch-pg-"))
    else:
        base_dir.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="cinematch-pg-", dir=base_dir))
    data, sock, log = root / "data", root / "sock", root / "server.log"
    sock.mkdir()
    password = password or secrets.token_urlsafe(18)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if root_user:
        shutil.chown(root, "postgres", "postgres")
        for p in (sock, pwfile):
            shutil.chown(p, "postgres", "postgres")
    os.chmod(pwfile, 0o600)

    def stop() -> None:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                           capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)

    try:
        _run(
            [str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, f"--pwfile={pwfile}", "-E", "UTF8",
             "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions"],
            "initdb",
        )  # fmt: skip
        pwfile.unlink()
        settings = ["listen_addresses=127.0.0.1", f"unix_socket_directories={sock}", "max_connections=50",
                    "shared_buffers=128MB", "log_min_messages=warning"]  # fmt: skip
        if not durable:
            settings += ["fsync=off", "full_page_writes=off", "synchronous_commit=off"]
        for attempt in range(5):
            port = _free_port()
            opts = " ".join(f"-c {s}" for s in [*settings, f"port={port}"])
            try:
                _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60", "start"],
                     "pg_ctl start")  # fmt: skip
                break
            except ServerUnavailable:
                if attempt == 4:  # the port may have been taken between probing and binding
                    raise
                time.sleep(0.2)
    except BaseException:
        stop()
        raise
    return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{port}/postgres", stop


def create_database(url: str, name: str) -> str:
    """Create database ``name`` on the server of ``url`` and return the URL that points at it."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f'create database "{name}"')
    return url.rsplit("/", 1)[0] + "/" + name


def main() -> None:
    """Developer tool: start a server, print its URL, wait for Ctrl-C, then stop it and delete its data."""
    try:
        url, stop = start_local_server(durable=True)
    except ServerUnavailable as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)
    print(f"export CINEMATCH_DATABASE_URL='{url}'", flush=True)
    sys.stderr.write("local PostgreSQL running; Ctrl-C stops it and deletes its data\n")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        with contextlib.suppress(Exception):
            stop()


if __name__ == "__main__":
    main()
