"""What a ranking candidate would cost to serve on the whole training data, projected before it is fitted.

The validation search runs on a sample of whole users (``search_max_ratings``), so every candidate is cheap
there, but the chosen one is then refitted on all the training data at every retrain, and its lists are
recomputed for every user: a 192-factor iALS at confidence α = 2 chosen on 25M ratings took 128 s to fit, and
each fold-in of every user through per-user solves would take minutes more. The search keeps a candidate only
when its projected cost fits ``fit_budget_seconds`` (candidates above it are recorded, not fitted).

The projection is a deterministic count of operations, scaled by seconds per operation measured on this
project's reference machine (2 cores, see BENCHMARKS.md "Scale: 25M generated ratings"), so the same data and
settings always choose the same model, whatever the machine's load:

* iALS fit through ``implicit`` (α ≠ 1, conjugate gradient): per iteration nnz·f + (users + items)·f²,
  3.1e-9 s each (7.37 s per iteration at 64 factors on 22.8M interactions, 162k users x 62k movies);
* iALS fit by CineMatch's exact solver (α = 1): the same count at 1.0e-9 s (2.40 s per iteration there);
* fold-in of every user for the lists (α ≠ 1, a k x k solve per user): users·(h·f² + f³) with h the mean
  history length, 1.5e-10 s each (20.8 s at 64 factors there); at α = 1 one shared system, not counted;
* EASE (and session EASE): the n³ of the float32 Cholesky inverse at 1.3e-11 s (105 s at 20,000 movies).

The counts leave out what does not grow with the choice (reading the data, the histories), so small data is
never near a budget: on ml-latest-small the costliest candidate projects to about 20 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

IMPLICIT_SECONDS_PER_OP = 3.1e-9
EXACT_SECONDS_PER_OP = 1.0e-9
FOLD_IN_SECONDS_PER_OP = 1.5e-10
EASE_SECONDS_PER_OP = 1.3e-11


@dataclass(frozen=True)
class DataShape:
    """What the projection reads from the whole training data: interactions, users, catalogue size."""

    interactions: int
    users: int
    items: int

    @classmethod
    def of(cls, train: pa.Table, items: int) -> DataShape:
        users = len(np.unique(train.column("user_id").to_numpy()))
        return cls(interactions=train.num_rows, users=users, items=items)


def projected_seconds(kind: str, params: dict[str, Any], shape: DataShape) -> float:
    """The projected seconds to fit a ``kind`` component with ``params`` on data of ``shape`` and fold every
    user in once (see the module docstring for the counts and their measured rates)."""
    if kind in ("ease", "session_ease"):
        return float(shape.items) ** 3 * EASE_SECONDS_PER_OP
    f = float(params["factors"])
    per_iteration = shape.interactions * f + (shape.users + shape.items) * f * f
    if float(params["alpha"]) == 1.0 and not params.get("reg_per_rating", False):
        return float(params["iterations"]) * per_iteration * EXACT_SECONDS_PER_OP
    history = shape.interactions / max(1, shape.users)
    fold_in = shape.users * (history * f * f + f**3)
    return float(params["iterations"]) * per_iteration * IMPLICIT_SECONDS_PER_OP + fold_in * FOLD_IN_SECONDS_PER_OP
