"""The `cinematch` command group: common options, output and the error convention."""

from __future__ import annotations

import functools
import json
import sys
import traceback
from collections.abc import Callable, Iterator
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
from cinematch._log import configure
from cinematch.errors import CineMatchError
from cinematch.settings import Settings, get_settings

# Piped output keeps whole table cells (rich would squeeze them to 80 columns).
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False)


class Ctx:
    """Per-invocation state shared by a command and its helpers."""

    def __init__(self, as_json: bool, debug: bool) -> None:
        self.json = as_json
        self.debug = debug
        self._settings: Settings | None = None

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
    if ctx.json:
        sys.stdout.write(to_json(doc) + "\n")
    elif human is not None:
        human()
    else:
        out.print_json(to_json(doc))


def table(title: str | None, rows: list[dict], columns: list[str] | None = None) -> Table:
    columns = columns or (list(rows[0]) if rows else [])
    t = Table(title=title, show_lines=False, header_style="bold")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(
            *("" if r.get(c) is None else f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r[c]) for c in columns)
        )
    return t


def command(group: click.Group, name: str | None = None, **kwargs: Any) -> Callable:
    """Register a command that takes --json and --debug and receives a :class:`Ctx` first."""

    def decorator(fn: Callable) -> click.Command:
        @functools.wraps(fn)
        def wrapper(*args: Any, json_: bool, debug: bool, **kw: Any) -> Any:
            configure("DEBUG" if debug else None)
            return fn(Ctx(json_, debug), *args, **kw)

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
        sys.stderr.write(f"error: {_one_line(exc.format_message())}{hint}\n")
        sys.exit(2)
    except click.ClickException as exc:
        sys.stderr.write(f"error: {_one_line(exc.format_message())}\n")
        sys.exit(2)
    except CineMatchError as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"error: {_one_line(str(exc))}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except Exception as exc:  # the last resort: still one line unless --debug
        if debug:
            traceback.print_exc()
        from cinematch.secrets import redact

        sys.stderr.write(
            f"error: unexpected {type(exc).__name__}: {_one_line(redact(str(exc)))[:300]} "
            "(rerun with --debug for the traceback)\n"
        )
        sys.exit(1)
    sys.exit(0)
