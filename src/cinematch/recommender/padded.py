"""Padded blocks of CSR rows: vectorized per-row work (explanations, fold-in) without a Python loop per row."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

# Elements per padded block (rows x longest row x width): ~64 MB of float32 temporaries.
BLOCK_ELEMENTS = 16_000_000


def row_blocks(counts: np.ndarray, width: int = 1, budget: int = BLOCK_ELEMENTS) -> Iterator[np.ndarray]:
    """Groups of row indices of similar length, each padded block within ``budget`` elements.

    Rows are sorted by length, so a block's padding is at most the gap between its shortest and longest row.
    """
    order = np.argsort(counts, kind="stable")
    sorted_counts = counts[order]
    start, n = 0, len(order)
    while start < n:
        # grow the block while (rows x longest row x width) stays within budget
        longest = max(1, int(sorted_counts[min(n - 1, start)]))
        stop = start + max(1, budget // (longest * width))
        stop = min(n, stop)
        longest = max(1, int(sorted_counts[stop - 1]))
        stop = min(stop, start + max(1, budget // (longest * width)))
        yield order[start:stop]
        start = stop


def padded(x: sp.csr_matrix, rows: np.ndarray, fill: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """(columns, valid): the column indices of ``rows`` as a (len(rows), longest) array padded with ``fill``."""
    starts = x.indptr[rows]
    counts = x.indptr[rows + 1] - starts
    length = max(1, int(counts.max())) if len(rows) else 1
    steps = np.arange(length)
    valid = steps[None, :] < counts[:, None]
    pos = np.where(valid, starts[:, None] + steps[None, :], 0)
    cols = np.where(valid, x.indices[pos] if x.nnz else 0, fill)
    return cols.astype(np.int64), valid


def values(x: sp.csr_matrix, rows: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The stored values of ``rows`` in the layout of :func:`padded` (0 on padding)."""
    starts = x.indptr[rows]
    pos = np.where(valid, starts[:, None] + np.arange(valid.shape[1])[None, :], 0)
    return np.where(valid, x.data[pos] if x.nnz else 0, 0).astype(np.float32)
