"""The home's advisory lock: writers take it exclusively, readers shared; a busy lock names its holder."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from cinematch.core.errors import LockBusy
from cinematch.core.log import get_logger, log_event
from cinematch.core.settings import Settings

log = get_logger(__name__)


class HomeLock:
    """An advisory file lock on HOME: writers take it exclusively, readers shared.

    DuckDB allows one read-write process per file, so commands queue here with a clear message
    instead of failing inside DuckDB.
    """

    def __init__(self, settings: Settings, exclusive: bool = True, command: str = "cinematch") -> None:
        self.path = settings.home_dir / ".lock"
        self.exclusive = exclusive
        self.command = command
        self.timeout = settings.lock_timeout_seconds
        self._fd: int | None = None

    def __enter__(self) -> HomeLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        mode = fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH
        deadline = time.monotonic() + self.timeout
        announced = False
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self._holder(fd)
                    os.close(fd)
                    raise LockBusy(
                        f"another cinematch command ({holder}) holds the lock of {self.path.parent}; "
                        "wait for it to finish and run this again"
                    ) from None
                if not announced:
                    log_event(log, "waiting_for_lock", holder=self._holder(fd), home=str(self.path.parent))
                    announced = True
                time.sleep(0.1)
        if self.exclusive:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": self.command}).encode(), 0)
        self._fd = fd
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        """The processes holding the lock now: from the kernel's lock table, not from the last writer's record.

        The file names the last exclusive holder, which may have exited long ago while a reader (shared, which
        writes nothing) holds the lock now. Where the kernel table is not readable, the record is named only
        while its process still runs.
        """
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except (OSError, ValueError):
            info = {}
        holders = _lock_holders(fd)
        if holders is None:  # no /proc/locks (not Linux): the record, if that process is alive
            pid = info.get("pid")
            return f"pid {pid}: {info.get('command')}" if isinstance(pid, int) and process_alive(pid) else "unknown"
        if not holders:
            return "unknown"
        named = [
            f"pid {pid}: {info.get('command') if pid == info.get('pid') and mode == 'writing' else _command_of(pid)}"
            f", {mode}"
            for pid, mode in holders[:3]
        ]
        return "; ".join(named) + (f"; and {len(holders) - 3} more" if len(holders) > 3 else "")

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _lock_holders(fd: int) -> list[tuple[int, str]] | None:
    """(pid, "reading" | "writing") of every granted flock on ``fd``'s file, from /proc/locks; None without it."""
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    st = os.fstat(fd)
    exact = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    granted: list[tuple[str, int, str]] = []
    for line in table.splitlines():  # one line per lock held on this machine
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:56789 0 EOF"; waiters are marked "->" and hold nothing
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[4].isdigit() and int(fields[4]) != os.getpid():
            granted.append((fields[5], int(fields[4]), "writing" if fields[3] == "WRITE" else "reading"))
    found = [(pid, mode) for ident, pid, mode in granted if ident == exact]
    if not found:  # stacked file systems (overlayfs) may report another device for the same inode
        found = [(pid, mode) for ident, pid, mode in granted if ident.split(":")[-1] == str(st.st_ino)]
    return sorted(set(found))


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (another user's process counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _command_of(pid: int) -> str:
    """``cinematch <command>`` of a running process, from its command line (options and values left out)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "unknown"
    words = [a for a in argv if a]
    for i, arg in enumerate(words):
        if arg == "cinematch" or arg.endswith("/cinematch") or arg.endswith("cinematch.cli"):
            rest = [w for w in words[i + 1 :] if not w.startswith("-")][:2]
            return " ".join(["cinematch", *rest])
    return Path(words[0]).name if words else "unknown"
