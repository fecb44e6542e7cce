"""core/arrow_pool.py: CLI commands allocate Arrow buffers with the system allocator unless the user chose a pool.

Each case runs in a fresh interpreter: the default pool is process-wide.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROBE = (
    "import pyarrow as pa; from cinematch.core.arrow_pool import use_system_pool; "
    "before = pa.default_memory_pool().backend_name; kept = use_system_pool(); "
    "print(before, kept, pa.default_memory_pool().backend_name)"
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    return {**env, **extra}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=120)


def test_the_system_pool_replaces_arrows_default() -> None:
    run = _run(["-c", PROBE], _env())
    assert run.returncode == 0, run.stderr
    before, kept, after = run.stdout.split()
    assert before != "system"  # this pyarrow build defaults to another pool (mimalloc), so the switch is real
    assert (kept, after) == ("True", "system")


def test_a_pool_the_user_named_is_kept() -> None:
    run = _run(["-c", PROBE], _env(ARROW_DEFAULT_MEMORY_POOL="mimalloc"))
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["mimalloc", "False", "mimalloc"]


def test_cli_commands_switch_it(tmp_path: Path) -> None:
    env = _env(CINEMATCH_HOME=str(tmp_path / "home"), CINEMATCH_LOG_LEVEL="INFO")
    run = _run(["-m", "cinematch", "init", "--json"], env)
    assert run.returncode == 0, run.stderr
    assert "event=arrow_pool backend=system" in run.stderr
