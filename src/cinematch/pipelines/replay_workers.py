"""The replay's policies side by side: one process per policy at a time, as many at once as there are workers.

Policies share nothing but the base and the history's files (each plays in its own home with its own
warehouse), so they run in separate processes (``spawn``: no DuckDB or BLAS thread state is inherited).
The costliest policies start first (always-retrain, then drift, then fixed cadences, then never), so a
long one does not start last on an otherwise idle machine. A worker dies with the replay process (Linux
``PR_SET_PDEATHSIG``): a replay killed with SIGKILL leaves no policy running, and a rerun continues
every policy from its stored rows exactly as a sequential one does. A worker left without a policy fits
ahead for the scheduled policies still playing (pipelines/replay_prefetch.py).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from threadpoolctl import threadpool_limits

from cinematch.core.arrow_pool import use_system_pool
from cinematch.core.log import get_logger, log_event
from cinematch.core.settings import Settings
from cinematch.pipelines.replay import replay_policy
from cinematch.pipelines.replay_data import ReplayPlan
from cinematch.pipelines.replay_policy import Policy
from cinematch.pipelines.replay_prefetch import prefetch, scheduled

log = get_logger(__name__)

_PR_SET_PDEATHSIG = 1


def default_workers(policies: int) -> int:
    """One worker per core, never more than there are policies."""
    return max(1, min(policies, os.cpu_count() or 1))


def _cost(policy: Policy) -> tuple[int, int]:
    """Sort key, costliest first: always, drift, every:N (small N first), never."""
    rank = {"always": 0, "drift": 1, "every": 2, "never": 3}.get(policy.kind, 2)
    return rank, policy.every or 0


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the parent died before the call: do not start orphaned work
            os._exit(1)


def _start_worker(started: Any, cores: list[int]) -> None:
    """A worker's start: it dies with the replay, and it keeps to one core of its own with one thread.

    With a worker per core, each one's thread pools (BLAS, the ALS solver's and the ranker's, implicit's
    OpenMP) would otherwise start a thread per core of the machine: twice as many busy threads as cores,
    and OpenBLAS's threads spin while they wait. The pools follow the core set (``default_threads`` reads
    it; OpenMP starts after it is set); the BLAS already loaded is limited to one thread.
    """
    _die_with_parent()
    use_system_pool()  # a spawned process starts with Arrow's default pool (core/arrow_pool.py)
    if hasattr(os, "sched_setaffinity") and len(cores) > 1:
        with started.get_lock():
            index, started.value = started.value, started.value + 1
        os.sched_setaffinity(0, {cores[index % len(cores)]})
        threadpool_limits(limits=1)


def _play(settings: Settings, plan: ReplayPlan, policy: Policy, echo: bool) -> list[dict[str, Any]]:
    say: Callable[[str], None] = (lambda line: print(line, flush=True)) if echo else (lambda line: None)
    return replay_policy(settings, plan, policy, say)


def play_policies(
    settings: Settings,
    plan: ReplayPlan,
    policies: list[Policy],
    say: Callable[[str], None],
    workers: int,
    echo: bool,
) -> list[dict[str, Any]]:
    """Every policy's period rows, in the order of ``policies``; ``workers`` > 1 plays them in parallel."""
    if workers <= 1 or len(policies) <= 1:
        return [row for policy in policies for row in replay_policy(settings, plan, policy, say)]
    context = multiprocessing.get_context("spawn")
    count = min(workers, len(policies))
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    started = context.Value("i", 0)
    start = (started, cores if count >= len(cores) else [])  # fewer workers than cores: no pinning
    with ProcessPoolExecutor(count, mp_context=context, initializer=_start_worker, initargs=start) as pool:
        futures = {p.name: pool.submit(_play, settings, plan, p, echo) for p in sorted(policies, key=_cost)}
        if any(scheduled(p) for p in policies):  # queued last: it starts on the first worker left without a policy
            pool.submit(_prefetch, settings, plan, policies)
        done = {name: future.result() for name, future in futures.items()}
    return [row for policy in policies for row in done[policy.name]]


def _prefetch(settings: Settings, plan: ReplayPlan, policies: list[Policy]) -> int:
    """pipelines/replay_prefetch.py; a failure there costs only time (each policy fits what it lacks)."""
    try:
        return prefetch(settings, plan, policies)
    except Exception as exc:  # the policies do not depend on it
        log_event(log, "replay_prefetch_failed", logging.WARNING, error=type(exc).__name__, detail=str(exc)[:200])
        return 0
