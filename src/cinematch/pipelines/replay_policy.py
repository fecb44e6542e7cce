"""The retraining policies a replay compares: drift-triggered, always, never, and a fixed cadence."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from cinematch.core.errors import BadInput

DEFAULT_COMPARE = ("drift", "always", "never", "every:4")
_FORMS = "drift, drift@SCORE (a retrain score threshold), always, never or every:N (N >= 1 periods)"


@dataclass(frozen=True)
class Policy:
    """When a replayed period ends in a retrain.

    ``drift``: when the drift check says ``retrain`` (score at or above ``threshold``, the setting
    ``drift_retrain_score`` when None); ``always``: every period with new ratings; ``never``: only the base
    model; ``every:N``: every N-th period (1-based), merging everything buffered since the last retrain.
    """

    kind: str  # drift | always | never | every
    every: int | None = None
    threshold: float | None = None

    @property
    def name(self) -> str:
        if self.kind == "every":
            return f"every:{self.every}"
        if self.kind == "drift" and self.threshold is not None:
            return f"drift@{self.threshold:g}"
        return self.kind

    @property
    def dirname(self) -> str:
        """The policy's folder name under the replay (``:`` and ``@`` are not portable in paths)."""
        return self.name.replace(":", "-").replace("@", "-at-")

    def retrains(self, period: int, drift_says_retrain: bool, buffered: bool) -> bool:
        """Whether period ``period`` (1-based) ends in a retrain, given the drift check and whether batches wait."""
        if not buffered or self.kind == "never":
            return False
        if self.kind == "always":
            return True
        if self.kind == "every":
            assert self.every is not None  # set by parse_policy
            return period % self.every == 0
        return drift_says_retrain


def parse_policy(text: str) -> Policy:
    """``drift``, ``drift@1.5``, ``always``, ``never`` or ``every:N``; anything else is a BadInput naming the forms."""
    value = text.strip()
    if value in ("drift", "always", "never"):
        return Policy(value)
    every = re.fullmatch(r"every:(\d+)", value)
    if every and int(every.group(1)) >= 1:
        return Policy("every", every=int(every.group(1)))
    drift = re.fullmatch(r"drift@([0-9]*\.?[0-9]+)", value)
    if drift and math.isfinite(float(drift.group(1))) and float(drift.group(1)) > 0:
        return Policy("drift", threshold=float(drift.group(1)))
    raise BadInput(f"--policy {text!r} is not a policy; use {_FORMS}")


def parse_policies(values: tuple[str, ...] | list[str], compare: bool, sweep: tuple[float, ...] = ()) -> list[Policy]:
    """The policies to run: those given (default ``drift``), the four standard ones with ``compare``, plus a
    ``drift@T`` per swept threshold; duplicates removed, order kept."""
    names = list(values) or (list(DEFAULT_COMPARE) if compare else ["drift"])
    if compare:
        names += [n for n in DEFAULT_COMPARE if n not in names]
    policies = [parse_policy(n) for n in names]
    policies += [parse_policy(f"drift@{t:g}") for t in sweep]
    unique: dict[str, Policy] = {}
    for policy in policies:
        unique.setdefault(policy.name, policy)
    return list(unique.values())
