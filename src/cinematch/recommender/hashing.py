"""64-bit mixing in place, in cache-sized blocks: the list cache's fingerprints and the training split's hash."""

from __future__ import annotations

import numpy as np

# Values hashed per block: a block's few uint64 arrays stay in cache. Whole-array expressions made a fresh
# temporary of the ratings' size per operation (25M ratings: 2.2 s against 0.3 s).
HASH_BLOCK = 1 << 16


def mix64(x: np.ndarray, tmp: np.ndarray) -> None:
    """splitmix64's finalizer on the uint64 words ``x``, in place (``tmp``: scratch of the same length); a bijective
    scramble that spreads every bit over the low ones. Call it under ``np.errstate(over="ignore")``."""
    for shift, factor in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB), (31, None)):
        np.right_shift(x, np.uint64(shift), out=tmp)
        x ^= tmp
        if factor is not None:
            x *= np.uint64(factor)
