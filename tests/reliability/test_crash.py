"""SIGKILL `ingest`, `etl`, `train` and `publish` at seeded random moments: the home stays consistent, a rerun completes.

For each command: one prepared home (tests/reliability/_homes.py) is copied per trial; an uninterrupted run on
another copy gives the command's duration and the "after" state. Kill moments are stratified over that duration
(one seeded uniform draw per twentieth), so they cover start-up, the work and the commit.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.reliability._homes import (
    LAKE,
    TRAIN_ARGS,
    Prepared,
    check_invariants,
    copy_home,
    dump,
    go,
    measure,
    prepare,
    settings_for,
    snapshot,
    start_warm,
)

from cinematch.ingest.bronze import ingest_file
from cinematch.lakehouse.etl import run_etl
from cinematch.recommender.training import params_from_settings, train_warehouse
from cinematch.serving.publish import publish
from cinematch.storage.warehouse import write_session

pytestmark = pytest.mark.reliability

TRIALS = 20
SEEDS = {"ingest": 101, "etl": 202, "train": 303, "publish": 404}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    return prepare(tmp_path_factory.mktemp("crash"))


def _args(command: str, p: Prepared) -> tuple[str, ...]:
    return {"ingest": ("ingest", str(p.big)), "etl": ("etl",), "train": ("train", *TRAIN_ARGS),
            "publish": ("publish",)}[command]  # fmt: skip


def _train_shape(s: dict[str, Any]) -> tuple:
    champion = [v for v, c, _ in s["registry"] if c]
    return (len(s["registry"]), sorted(b for b, _ in s["training_batches"]),
            [n for _, n in s["recommendations"]], champion == [max(v for v, _, _ in s["registry"])])  # fmt: skip


# Per command: is a state after a kill "old or new"? and is the state after the rerun exactly right?
def _ingest_between(s: dict, before: dict, after: dict) -> bool:
    part = lambda x: (x["buffer"], x["quarantine"], x["audit"])  # noqa: E731
    return part(s) in (part(before), part(after))


def _ingest_final(s: dict, killed: dict, after: dict) -> None:
    assert (s["buffer"], s["quarantine"], s["audit"]) == (after["buffer"], after["quarantine"], after["audit"])


def _etl_between(s: dict, before: dict, after: dict) -> bool:
    lake_ok = all(s["lake"][n] in (before["lake"][n], after["lake"][n]) for n in LAKE)
    return (
        s["silver"] in (before["silver"], after["silver"]) and s["gold"] in (before["gold"], after["gold"]) and lake_ok
    )


def _etl_final(s: dict, killed: dict, after: dict) -> None:
    assert (s["silver"], s["gold"], s["lake"]) == (after["silver"], after["gold"], after["lake"])
    assert s["lake_matches_warehouse"], s["lake"]


def _train_between(s: dict, before: dict, after: dict) -> bool:
    return _train_shape(s) in (_train_shape(before), _train_shape(after))


def _train_final(s: dict, killed: dict, after: dict) -> None:
    # every `train` registers a version: a run that committed before the kill plus the rerun make one more
    rows, batches, recs, newest_is_champion = _train_shape(s)
    assert rows == len(killed["registry"]) + 1
    assert (batches, recs, newest_is_champion) == _train_shape(after)[1:]
    assert s["alias"] == max(v for v, _, _ in s["registry"])


def _publish_between(s: dict, before: dict, after: dict) -> bool:
    return s["views"] == before["views"] or (
        s["views"][0] != before["views"][0] and s["views"][1:] == after["views"][1:]
    )


def _publish_final(s: dict, killed: dict, after: dict) -> None:
    assert s["views"][1:] == after["views"][1:] and s["views"][0] != killed["views"][0]


RULES: dict[str, tuple[Callable, Callable]] = {
    "ingest": (_ingest_between, _ingest_final),
    "etl": (_etl_between, _etl_final),
    "train": (_train_between, _train_final),
    "publish": (_publish_between, _publish_final),
}


def rerun(command: str, home: Path, args: tuple[str, ...]) -> None:
    """The library call behind the CLI command (in-process: no interpreter start-up per trial)."""
    settings = settings_for(home)
    with write_session(settings, command) as con:
        if command == "ingest":
            ingest_file(con, Path(args[1]))
        elif command == "etl":
            run_etl(con, settings)
        elif command == "train":
            train_warehouse(con, settings, params_from_settings(settings, rank=8, iterations=5))
        else:
            publish(con, settings)


def _trial(src: Path, home: Path, args: tuple[str, ...], delay: float, before: dict, after: dict, command: str) -> str:
    copy_home(src, home)
    proc = start_warm(home, *args)
    go(proc)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    code = proc.wait()
    killed = snapshot(home)
    check_invariants(home, killed)
    between, final = RULES[command]
    assert between(killed, before, after), f"kill at {delay:.2f}s left a mixed state: {dump(killed)}"
    rerun(command, home, args)
    state = snapshot(home)
    check_invariants(home, state)
    final(state, killed, after)
    shutil.rmtree(home)
    return "finished" if code == 0 else ("old" if between(killed, before, before) else "new")


@pytest.mark.parametrize("command", list(RULES))
def test_sigkill_keeps_home_consistent(prepared: Prepared, tmp_path: Path, command: str) -> None:
    src = getattr(prepared, command)
    args = _args(command, prepared)
    before = snapshot(src)
    check_invariants(src, before)
    ref = copy_home(src, tmp_path / "reference")
    duration, code, err = measure(ref, *args)
    assert code == 0, err
    after = snapshot(ref)
    check_invariants(ref, after)
    assert RULES[command][0](after, before, after) and not RULES[command][0](before, after, after)

    rng = np.random.default_rng(SEEDS[command])
    # stratified: one kill moment in each twentieth of [0, 1.8] x the measured work (two trials run at once,
    # so a trial runs somewhat slower than the reference)
    delays = duration * 1.8 * (np.arange(TRIALS) + rng.uniform(size=TRIALS)) / TRIALS
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(
            lambda i: _trial(src, tmp_path / f"trial{i}", args, float(delays[i]), before, after, command),
            range(TRIALS)))  # fmt: skip
    # the kills really landed inside the command: some left the old state, some not
    assert outcomes.count("finished") < TRIALS, outcomes
    print(
        f"{command}: work {duration:.2f}s, {duration:.2f}s, outcomes { {o: outcomes.count(o) for o in set(outcomes)} }"
    )
