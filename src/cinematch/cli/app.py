"""The `cinematch` command group: common options, output and the error convention."""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cinematch import __version__
from cinematch.core.arrow_pool import use_system_pool
from cinematch.core.errors import CineMatchError
from cinematch.core.log import configure
from cinematch.core.settings import Settings, get_settings

# Piped output keeps whole table cells (rich would squeeze them to 80 columns).
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False)


class Ctx:
    """Per-invocation state shared by a command and its helpers."""

    def __init__(self, as_json: bool, debug: bool) -> None:
        self.json = as_json
        self.debug = debug
        self._settings: Settings | None = None
        self.result: Any = None  # the document emit() printed: the run's result, for its lineage event

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = get_settings()
        return self._settings

    @contextmanager
    def progress(self, description: str, total: float | None = None) -> Iterator[Callable[..., None]]:
        """A rich progress bar on a terminal; silent under --json or when stderr is not a TTY."""
        if self.json or not err.is_terminal:
            yield lambda *a, **k: None
            return
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:g}/{task.total:g}" if total else ""),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task(description, total=total)

            def update(advance: float = 0, description: str | None = None, completed: float | None = None) -> None:
                bar.update(
                    task,
                    advance=advance,
                    description=description or bar.tasks[0].description,
                    completed=completed,
                )

            yield update


def _default(obj: Any) -> Any:
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Decimal):
        return float(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return str(obj)


def to_json(doc: Any) -> str:
    return json.dumps(doc, default=_default, indent=None)


def emit(ctx: Ctx, doc: Any, human: Callable[[], None] | None = None) -> None:
    """Print exactly one JSON document under --json, else the human rendering."""
    ctx.result = doc
    if ctx.json:
        sys.stdout.write(to_json(doc) + "\n")
    elif human is not None:
        human()
    else:
        out.print_json(to_json(doc))


def table(title: str | None, rows: Sequence[Mapping[str, Any]], columns: list[str] | None = None) -> Table:
    columns = columns or (list(rows[0]) if rows else [])
    t = Table(title=title, show_lines=False, header_style="bold")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(
            *("" if r.get(c) is None else f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r[c]) for c in columns)
        )
    return t


def command(
    group: click.Group, name: str | None = None, **kwargs: Any
) -> Callable[[Callable[..., Any]], click.Command]:
    """Register a command that takes --json and --debug and receives a :class:`Ctx` first."""

    def decorator(fn: Callable[..., Any]) -> click.Command:
        @functools.wraps(fn)
        def wrapper(*args: Any, json_: bool, debug: bool, **kw: Any) -> Any:
            configure("DEBUG" if debug else None)
            use_system_pool()  # core/arrow_pool.py: Arrow's buffers from malloc, not mimalloc
            ctx = Ctx(json_, debug)
            if not (os.environ.get("CINEMATCH_OPENLINEAGE_URL") or os.environ.get("OPENLINEAGE_CONFIG")):
                return fn(ctx, *args, **kw)
            # OpenLineage START/COMPLETE/FAIL of the commands that read or write the warehouse (docs/lineage.md):
            # only when configured is anything of it imported
            from cinematch.pipelines.lineage_emit import command_run

            path = (name or fn.__name__) if group.name == "cli" else f"{group.name} {name}"
            with command_run(lambda: ctx.settings, path, kw) as run:
                value = fn(ctx, *args, **kw)
                if run is not None:
                    run.result = ctx.result
                return value

        wrapper = click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")(wrapper)
        wrapper = click.option("--json", "json_", is_flag=True, help="Print one JSON document on stdout.")(wrapper)
        return group.command(name, **kwargs)(wrapper)

    return decorator


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cinematch")
def cli() -> None:
    """CineMatch: ingest ratings, build the lakehouse, train and serve recommendations, watch drift."""


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _secrets() -> list[str | None]:
    """Every configured secret value, to scrub from whatever the error convention prints."""
    from urllib.parse import urlsplit

    from cinematch.core.secrets import password_of

    values = [
        os.environ.get(name) for name in ("CINEMATCH_DATABASE_URL", "CINEMATCH_API_KEY", "CINEMATCH_TMDB_API_KEY")
    ]
    url = values[0]
    mlflow_uri = os.environ.get("CINEMATCH_MLFLOW_TRACKING_URI") or ""  # http://user:pass@host: its password
    return [*values, password_of(url) if url else None, urlsplit(mlflow_uri).password if "://" in mlflow_uri else None]


def _print_error(message: str, debug: bool) -> None:
    """One ``error: ...`` line on stderr (after the traceback under --debug), with known secrets scrubbed."""
    from cinematch.core.secrets import redact, scrub

    secrets = _secrets()
    if debug:
        sys.stderr.write(scrub(redact(traceback.format_exc()), secrets))
    sys.stderr.write(f"error: {scrub(_one_line(message), secrets)}\n")


def _damaged_warehouse(exc: Exception) -> CineMatchError | None:
    """A DuckDB error that comes from a damaged warehouse file, as the recovery hint; None otherwise."""
    if not type(exc).__module__.lstrip("_").startswith("duckdb"):
        return None
    import duckdb

    from cinematch.storage.integrity import damaged, diagnose

    try:
        settings = get_settings()
        found = diagnose(settings)
    except Exception:  # the diagnosis must never hide the original error
        return None
    if found is None and isinstance(exc, duckdb.IOException) and str(settings.duckdb_path) in str(exc):
        found = damaged(settings.duckdb_path, str(exc))  # an I/O error of the file itself (EIO, short read)
    return found


def _alert(exc: BaseException, args: list[str]) -> None:
    """Post the failure to CINEMATCH_ALERT_WEBHOOK (``gate_failed`` for a quality gate): never raises, ~3 s at most."""
    words = [a for a in args if not a.startswith("-")]
    name = words[:1]
    if name and isinstance(cli.commands.get(name[0]), click.Group):  # `models promote`, `tmdb fetch`
        name = words[:2]
    from cinematch.pipelines import alerts

    alerts.post_exception(exc, "cli", " ".join(["cinematch", *name]), exit_code=getattr(exc, "exit_code", 1))


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the group and applies the error convention (one line, exit 2/1)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="cinematch", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else " (see `cinematch --help`)"
        _print_error(f"{exc.format_message()}{hint}", debug=False)
        sys.exit(2)
    except click.ClickException as exc:
        _print_error(exc.format_message(), debug=False)
        sys.exit(2)
    except CineMatchError as exc:
        _print_error(str(exc), debug)
        _alert(exc, args)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except Exception as exc:  # the last resort: still one line unless --debug
        known = _damaged_warehouse(exc)
        if known is not None:
            _print_error(str(known), debug)
            _alert(known, args)
            sys.exit(known.exit_code)
        _print_error(
            f"unexpected {type(exc).__name__}: {_one_line(str(exc))[:300]} (rerun with --debug for the traceback)",
            debug,
        )
        _alert(exc, args)
        sys.exit(1)
    sys.exit(0)
