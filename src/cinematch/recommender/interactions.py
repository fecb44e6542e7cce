"""Implicit-feedback matrices for the ranking models: who rated what (binary), and same-day sessions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from cinematch.core.errors import BadInput

SESSION_SECONDS = 86_400  # a "session" is one user's ratings of one UTC day


def _column(table: pa.Table, name: str) -> np.ndarray:
    if name not in table.column_names:
        raise BadInput(f"ratings table lacks column {name!r}")
    values: np.ndarray = table.column(name).to_numpy()
    return values


def epoch_seconds(table: pa.Table) -> np.ndarray:
    """``rated_at`` as int64 seconds since the epoch (timestamps of any unit, or plain numbers)."""
    col = table.column("rated_at")
    if pa.types.is_timestamp(col.type):
        # floor of the unit's ticks: a cast to timestamp[s] refuses sub-second values (it would lose data)
        ticks = col.cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64)
        per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[col.type.unit]
        seconds: np.ndarray = np.floor_divide(ticks, per_second)
        return seconds
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int64)


_TABLE_MAX = 1 << 26  # widest id range looked up through a dense table (512 MB of int64 positions)
_TABLE_MIN_IDS = 4096  # fewer ids than this: sorting or binary search beats building a table


def _dense_range(n_ids: int, span: int) -> bool:
    """Whether ``n_ids`` ids over a range of ``span`` values pay for a dense table indexed by id (lookup,
    unique_ids): enough ids, and a range no wider than twice their number (at least 2^20) or ``_TABLE_MAX``."""
    return n_ids >= _TABLE_MIN_IDS and span <= min(max(1 << 20, 2 * n_ids), _TABLE_MAX)


def unique_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct ids, their counts), as ``np.unique(ids, return_counts=True)``.

    Many ids over a compact range are counted by one ``bincount`` instead of a sort: 25M ratings' movie ids in
    0.1 s instead of 2 s. A wide range (or few ids) takes ``np.unique``.
    """
    ids = np.asarray(ids, dtype=np.int64)
    lo, hi = (int(ids.min()), int(ids.max())) if len(ids) >= _TABLE_MIN_IDS else (0, -1)
    if not _dense_range(len(ids), hi - lo + 1):
        return np.unique(ids, return_counts=True)
    counts = np.bincount(ids - lo, minlength=hi - lo + 1)
    present = np.flatnonzero(counts)
    return present + lo, counts[present]


def lookup(known: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position of each id in the sorted array ``known`` and whether it is there.

    Absent ids get their insertion point (clipped to the last position). Many ids over a compact id range
    go through a dense position table (``positions``): binary search over 25M ids took seconds in cache misses.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if len(known) == 0:
        return np.zeros(len(ids), np.int64), np.zeros(len(ids), bool)
    pos = positions(known, ids)
    ok = pos >= 0
    if not ok.all():
        pos[~ok] = np.minimum(np.searchsorted(known, ids[~ok]), len(known) - 1)
    return pos, ok


def positions(known: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Position of each id in the sorted ``known`` (the first of a repeated one), -1 where absent: ``lookup`` without
    the insertion points of absent ids (a binary search each). Ids that start near 0 index the table by the id itself
    (no offset array: at 25M ratings each temporary of their size costs more than the gather)."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(known) == 0 or len(ids) == 0:
        return np.full(len(ids), -1, np.int64)
    lo, hi = int(known[0]), int(known[-1])
    base = 0 if 0 <= lo <= hi - lo + 1 else lo
    span = hi - base + 1
    if not _dense_range(len(ids), span):
        nearest = np.minimum(np.searchsorted(known, ids), len(known) - 1)
        nearest[known[nearest] != ids] = -1
        return nearest
    table = np.full(span, -1, np.int64)
    table[known[::-1] - base] = np.arange(len(known) - 1, -1, -1)  # reversed: a repeated id keeps its first position
    if int(ids.min()) >= base and int(ids.max()) <= hi:
        found: np.ndarray = table[ids - base] if base else table[ids]
        return found
    offset, inside = _offsets(ids, base, span)
    pos: np.ndarray = table[offset]
    if inside is not None:
        pos[~inside] = -1
    return pos


def present(known: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Whether each id is in the sorted array ``known``: ``lookup``'s second result without the insertion points of
    absent ids (a binary search each: most of the 18M training rows when ``known`` is a 20,000-user sample)."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(known) == 0 or len(ids) == 0:
        return np.zeros(len(ids), bool)
    lo, hi = int(known[0]), int(known[-1])
    span = hi - lo + 1
    if not _dense_range(len(ids), span):
        return np.isin(ids, known)
    table = np.zeros(span, bool)
    table[known - lo] = True
    offset, inside = _offsets(ids, lo, span)
    out: np.ndarray = table[offset]
    if inside is not None:
        out &= inside
    return out


def _offsets(ids: np.ndarray, lo: int, span: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``ids - lo`` as indices into a table of ``span`` entries, those outside it set to 0, and the mask of the ones
    inside (None: all are). One unsigned comparison checks the range (a negative offset is a huge unsigned one):
    np.clip on 20M int64 offsets cost 5x the table gather."""
    offset = ids - lo
    inside = offset.view(np.uint64) < np.uint64(span)
    if inside.all():
        return offset, None
    offset[~inside] = 0
    return offset, inside


@dataclass
class Histories:
    """Binary user x item matrix over a fixed item index, plus each entry's rating (same structure)."""

    user_ids: np.ndarray  # sorted distinct external user ids (rows)
    item_ids: np.ndarray  # sorted external item ids (columns), the model's catalogue
    binary: sp.csr_matrix  # 1.0 where the user rated the item
    ratings: sp.csr_matrix  # the rating (mean of duplicates), same sparsity as ``binary``

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def rows(self, users: np.ndarray) -> sp.csr_matrix:
        """Binary rows of the given external users (empty rows for users without history)."""
        pos, ok = lookup(self.user_ids, users)
        out = self.binary[pos]
        if not ok.all():
            out = sp.diags(ok.astype(np.float32)) @ out
            out.eliminate_zeros()
        return out.tocsr()

    def rating_rows(self, users: np.ndarray) -> sp.csr_matrix:
        pos, ok = lookup(self.user_ids, users)
        out = self.ratings[pos]
        if not ok.all():
            out = sp.diags(ok.astype(np.float32)) @ out
            out.eliminate_zeros()
        return out.tocsr()


def _csr(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    m = sp.csr_matrix((values.astype(np.float32), (rows, cols)), shape=shape)
    m.sum_duplicates()
    return m


_CODE_BITS = 4  # half-star ratings 0.0-7.5 travel inside the sort key as rating x 2


def _history_matrices(
    upos: np.ndarray, ipos: np.ndarray, values: np.ndarray, shape: tuple[int, int]
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(binary, ratings) canonical CSR matrices of the pairs whose positions are both >= 0; a pair given more than
    once gets the mean of its ratings. ``upos`` and ``ipos`` are the caller's to give up: they are reused in place.

    One sort of a (user, item) key replaces SciPy's COO conversion, its sort within rows and the filtering of
    unknown ids; half-star ratings ride in the key's low bits, so the key is sorted alone (other ratings take an
    argsort and a gather). Each step writes into arrays already made: at 25M ratings a fresh array of their size
    costs more than the arithmetic on it (25M ratings, the two builds alternating: 2.8-3.5 s -> 1.3-1.6 s).
    """
    n_users, n_items = shape
    valid = (upos >= 0) & (ipos >= 0)
    n = int(np.count_nonzero(valid))
    key = upos  # (user, item) key, in place
    key *= n_items
    key += ipos
    spare = ipos  # an int64 array of the ratings' size, free from here on
    doubled = values * 2
    np.copyto(spare, doubled, casting="unsafe")
    packed = bool(n_users * n_items < (1 << (62 - _CODE_BITS)) and len(values) and spare.min() >= 0
                  and spare.max() < (1 << _CODE_BITS) and np.array_equal(spare, doubled))  # fmt: skip
    del doubled
    if packed:
        key <<= _CODE_BITS
        key |= spare
    key[~valid] = np.iinfo(np.int64).max  # unknown user or item: sorted last, then cut off
    if packed:
        key.sort()
        key, spare = key[:n], spare[:n]
        np.bitwise_and(key, (1 << _CODE_BITS) - 1, out=spare)
        vals = spare.astype(np.float32)
        vals *= np.float32(0.5)
        key >>= _CODE_BITS
    else:
        order = np.argsort(key)[:n]
        key, vals, spare = key[order], values[order].astype(np.float32), spare[:n]
    first = np.ones(n, bool)
    np.not_equal(key[1:], key[:-1], out=first[1:])
    if not first.all():  # repeated pairs: the mean of their ratings, on the first of each
        starts = np.flatnonzero(first)
        vals = (np.add.reduceat(vals.astype(np.float64), starts) / np.diff(np.append(starts, n))).astype(np.float32)
        key, spare = key[starts], spare[: len(starts)]
    rows = np.floor_divide(key, n_items, out=spare)
    cols = np.remainder(key, n_items, out=key)
    indptr = np.zeros(n_users + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n_users), out=indptr[1:])
    index_type = np.int32 if max(len(cols), n_items) < np.iinfo(np.int32).max else np.int64
    indices = cols.astype(index_type)
    ratings = sp.csr_matrix((vals, indices, indptr.astype(index_type)), shape=shape)
    binary = sp.csr_matrix((np.ones(len(vals), np.float32), indices.copy(), ratings.indptr.copy()), shape=shape)
    for m in (ratings, binary):
        m.has_sorted_indices = True
        m.has_canonical_format = True
    return binary, ratings


def histories(table: pa.Table, item_ids: np.ndarray | None = None, user_ids: np.ndarray | None = None) -> Histories:
    """Histories of ``table``'s users over ``item_ids`` (default: every movie in the table).

    Ratings of movies outside ``item_ids`` are left out (a model cannot score what it does not know).
    """
    users = _column(table, "user_id").astype(np.int64, copy=False)
    items = _column(table, "movie_id").astype(np.int64, copy=False)
    values = _column(table, "rating").astype(np.float64, copy=False)
    if item_ids is None:
        item_ids = unique_ids(items)[0]
    if user_ids is None:
        user_ids = unique_ids(users)[0]
    shape = (len(user_ids), len(item_ids))
    binary, ratings = _history_matrices(positions(user_ids, users), positions(item_ids, items), values, shape)
    return Histories(np.asarray(user_ids, np.int64), np.asarray(item_ids, np.int64), binary, ratings)


def sessions(table: pa.Table, item_ids: np.ndarray) -> sp.csr_matrix:
    """Binary (user, UTC day) x item matrix: the movies each user rated on each day."""
    users = _column(table, "user_id").astype(np.int64)
    items = _column(table, "movie_id").astype(np.int64)
    day = epoch_seconds(table) // SESSION_SECONDS
    ipos, iok = lookup(item_ids, items)
    users, day, ipos = users[iok], day[iok], ipos[iok]
    # one row per distinct (user, day): factorise the pair through a lexicographic order
    order = np.lexsort((day, users))
    new = np.ones(len(order), bool)
    new[1:] = (users[order][1:] != users[order][:-1]) | (day[order][1:] != day[order][:-1])
    row = np.empty(len(order), np.int64)
    row[order] = np.cumsum(new) - 1
    out = _csr(row, ipos, np.ones(len(row)), (int(new.sum()), len(item_ids)))
    out.data[:] = 1.0
    return out
