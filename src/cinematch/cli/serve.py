"""Serving commands: publish the views, serve the HTTP API and dashboard."""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import signal
import socket
import sys
from types import FrameType

import click

from cinematch.cli.app import Ctx, cli, command, emit, err, out
from cinematch.core.errors import BadInput, CineMatchError
from cinematch.storage.warehouse import write_session


@command(cli, "publish")
def publish_cmd(ctx: Ctx) -> None:
    """Materialize the serving views for the champion model (a running `serve` picks them up)."""
    from cinematch.serving.publish import publish

    with write_session(ctx.settings, "publish") as con:
        doc = publish(con, ctx.settings)

    def human() -> None:
        c = doc["counts"]
        out.print(f"published {doc['path']}")
        out.print(f"model {doc['model_version'] or 'none (fallback lists only)'}: {c['recommendations']:,} "
                  f"recommendations for {doc['users']:,} users, {c['fallback']} fallback, {c['trending']} trending, "
                  f"{c['genres']} genres, {c['models']} models, {c['drift']} drift reports")  # fmt: skip

    emit(ctx, doc, human)


class _Stop(Exception):
    """Raised by the SIGINT/SIGTERM handler uvicorn re-raises after its graceful shutdown."""


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def _bind(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn: a busy port becomes one clear line, and --port 0 picks a free one."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BadInput(f"cannot resolve --host {host!r}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BadInput(f"port {port} on {host} is already in use; pick another with --port") from None
        raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@command(cli, "serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0 picks a free port.")
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="One key=value line per request on stderr.")  # fmt: skip
def serve_cmd(ctx: Ctx, host: str, port: int, access_log: bool) -> None:
    """The HTTP API and dashboard over the published views (reloads by itself after `cinematch publish`)."""
    try:
        import uvicorn

        from cinematch.web.api import create_app
    except ImportError as exc:
        raise CineMatchError(
            f"serving needs the `serve` extra ({exc.name} is missing): pip install 'cinematch[serve]'"
        ) from None

    from cinematch.core.log import get_logger, log_event

    sock = _bind(host, port)  # first: a busy port fails before any views are loaded
    try:
        log = get_logger("cinematch.serving")
        # serving events (views loaded, server stopped) are the operator's log; requests only when asked
        log.setLevel(logging.INFO)
        logging.getLogger("cinematch.serving.access").setLevel(logging.INFO if access_log else logging.WARNING)
        app = create_app(ctx.settings)
        views = app.state.store.views
        bound_host, bound_port = sock.getsockname()[:2]
        url = f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{bound_port}"
        doc = {"url": url, "host": bound_host, "port": bound_port, "home": str(ctx.settings.home_dir),
               "views_version": views.version if views else None,
               "model_version": views.meta["model_version"] if views else None}  # fmt: skip

        def human() -> None:
            out.print(f"serving on {url}  (dashboard {url}/ , OpenAPI {url}/openapi.json)")
            if views is None:
                err.print("no published views yet: run `cinematch publish` (picked up without a restart)")

        emit(ctx, doc, human)
        sys.stdout.flush()
        config = uvicorn.Config(app, log_level="warning", access_log=False, log_config=None, lifespan="off",
                                timeout_graceful_shutdown=5, server_header=False)  # fmt: skip
        server = uvicorn.Server(config)
        # Everything loaded so far lives as long as the server: keep it out of the cyclic GC, whose full
        # collections otherwise walk it and stall requests for tens of milliseconds (measured: 19-68 ms).
        gc.collect()
        gc.freeze()
        previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        stopped_by = "shutdown"
        try:
            server.run(sockets=[sock])
        except (_Stop, KeyboardInterrupt) as exc:
            stopped_by = str(exc) or "SIGINT"
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    finally:
        with contextlib.suppress(OSError):
            sock.close()
    log_event(log, "server_stopped", url=url, signal=stopped_by)
    if not ctx.json:
        out.print("stopped")
