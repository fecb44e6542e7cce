"""The landing folder: finding new files, loading each as one batch, moving it to processed/ or rejected/."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cinematch.core.errors import BadInput
from cinematch.core.log import get_logger, log_event
from cinematch.core.results import Result
from cinematch.datasets.delimited import public_message
from cinematch.datasets.formats import MOVIES_FORMATS, detect_format
from cinematch.datasets.viewing import viewing_kind
from cinematch.ingest.bronze import IngestResult, default_batch_id, ingest_file
from cinematch.storage.audit import utcnow
from cinematch.storage.protocol import Warehouse

log = get_logger(__name__)


@dataclass(eq=False)
class LandedFile(IngestResult):
    """A landing file loaded as one batch (or skipped as already loaded) and moved to ``processed/``."""

    moved_to: str = field(kw_only=True)


@dataclass(eq=False)
class RejectedFile(Result):
    """A landing file refused (unreadable, not a regular file, bad content) and moved to ``rejected/``."""

    batch_id: str
    inserted: int
    quarantined: int
    skipped: bool
    error: str
    moved_to: str


LandingResult = LandedFile | RejectedFile


def kind_of(path: Path) -> str:
    """Whether a landing file holds ratings, movies, users, sessions or content, from its detected format."""
    viewing = viewing_kind(path)
    if viewing is not None:
        return viewing
    fmt = detect_format(path)
    return "movies" if fmt in MOVIES_FORMATS and fmt != "parquet" else "ratings"


def landing_files(landing: Path) -> list[Path]:
    """New entries waiting in the landing folder, oldest name first: hidden entries and sub-folders are ignored;
    links and other entries that are not regular files are listed too, for ``ingest_landing`` to refuse
    without reading them."""
    if not landing.is_dir():
        return []
    entries = []
    for entry in os.scandir(landing):  # one entry per file of the folder, not per row
        if entry.name.startswith(".") or entry.is_dir(follow_symlinks=False):
            continue
        entries.append(Path(entry.path))
    return sorted(entries)


def _not_a_landing_file(landing: Path, path: Path) -> str | None:
    """Why ``path`` may not be read as a landing file (None when it may): only regular files that are
    inside ``landing`` itself, never a link (to a file elsewhere, or to one of landing's own files)."""
    try:
        mode = path.lstat().st_mode
    except OSError as exc:
        return f"cannot inspect it ({exc.strerror})"
    if stat.S_ISLNK(mode):
        return "it is a symbolic link; landing reads only regular files placed in the folder itself"
    if not stat.S_ISREG(mode):
        return "it is not a regular file; landing reads only regular files placed in the folder itself"
    if path.resolve().parent != landing.resolve():
        return "it resolves outside the landing folder"
    return None


def _folder(landing: Path, name: str) -> Path:
    """``landing/name``, created when missing; refused when it is a link (files would move elsewhere)."""
    folder = landing / name
    if folder.is_symlink():
        raise BadInput(f"{folder} is a symbolic link; make it a plain folder inside {landing}")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _move(path: Path, folder: Path) -> Path:
    target = folder / path.name
    if os.path.lexists(target):  # never overwrite an earlier file of the same name
        target = folder / f"{path.stem}.{utcnow():%Y%m%dT%H%M%S%f}{path.suffix}"
    os.rename(path, target)  # within landing/: moves a link itself, never what it points to
    return target


def _write_reason(target: Path, message: str) -> None:
    """``<file>.reason.txt`` beside a rejected file, readable by its owner only (0600), never through a link."""
    reason = target.with_name(target.name + ".reason.txt")
    if os.path.lexists(reason):
        reason.unlink()
    fd = os.open(reason, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(message + "\n")


def _reject(rejected: Path, path: Path, message: str) -> RejectedFile:
    target = _move(path, rejected)
    _write_reason(target, message)
    log_event(log, "landing_file_rejected", file=path.name, error=message)
    return RejectedFile(batch_id=default_batch_id(path), inserted=0, quarantined=0, skipped=False, error=message,
                        moved_to=str(target))  # fmt: skip


def ingest_landing(con: Warehouse, landing: Path, max_bad_share: float | None = None) -> list[LandingResult]:
    """Load every new file in ``landing``; move loaded files to ``processed/``, refused ones to ``rejected/``.

    Only regular files inside ``landing`` are read: a link or any other entry is refused unread. What is
    said about a refused file (output, log, reason file) never quotes its content. Nothing is deleted. No
    new files is a clean no-op.
    """
    results: list[LandingResult] = []
    paths = landing_files(landing)
    if not paths:
        return results
    processed, rejected = _folder(landing, "processed"), _folder(landing, "rejected")  # checked before loading
    for path in paths:
        why = _not_a_landing_file(landing, path)
        if why is not None:
            results.append(_reject(rejected, path, f"refused {path}: {why}"))
            continue
        try:
            res = ingest_file(con, path, kind=kind_of(path), max_bad_share=max_bad_share)
        except BadInput as exc:
            results.append(_reject(rejected, path, public_message(exc)))
            continue
        results.append(LandedFile(**res, moved_to=str(_move(path, processed))))
    return results
