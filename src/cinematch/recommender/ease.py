"""EASE (Steck 2019) and its denoising variant DLAE (Steck 2020): closed-form item-item ranking models.

Both learn one item x item weight matrix B from a binary interaction matrix X (rows are users, or one user's
same-day sessions) and score a history x as x·B:

* EASE: B = I − P·diagMat(1/diag(P)) with P = (XᵀX + λI)⁻¹ and a zero diagonal ("Embarrassingly Shallow
  Autoencoders for Sparse Data", WWW 2019).
* DLAE (``dropout`` p > 0): B = I − P·Λ with P = (XᵀX + Λ)⁻¹ and Λ = λI + p/(1−p)·diagMat(diag(XᵀX)), the
  closed form of a linear autoencoder trained with input dropout p ("Autoencoders that don't overfit towards
  the Identity", NeurIPS 2020). Seen items are never recommended, so its diagonal is irrelevant and set to 0.

Memory bound: the Gram matrix is inverted in place in float32 (LAPACK potrf/potri), so a fit needs about
n² x 4 bytes plus the interactions: 1.6 GB at 20,000 items, 3.6 GB at 30,000. With fewer rows m than items
(``dual_is_cheaper``: m ≤ 0.37 n) P comes from the m x m system instead, which also holds X densely in
float64 twice (m·n x 16 bytes: under 1.5 x the n x n matrix) beside P's n² x 4 bytes. Catalogues above
``max_items`` drop the least-supported items first (``fit`` raises the minimum support until they fit).
A stored model keeps, per item, its ``keep_per_item`` largest weights in float16 with a float32 scale per
column (about 6 bytes per kept weight instead of 4·n per item).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.linalg as sl
import scipy.sparse as sp

from cinematch.core.errors import BadInput
from cinematch.core.log import get_logger, log_event
from cinematch.recommender.model_files import read_meta

log = get_logger(__name__)

META = "ease.json"
FORMAT_VERSION = 1
_SYM_BLOCK = 256  # rows per block when mirroring the upper triangle (a block pair stays in cache)
_DENSE_BLOCK = 16_000_000  # floats of dense interaction columns per block of the sparse-dense Gram product
_PAIR_COST = 30  # the sparse Gram product's cost per item pair, in sparse-dense multiply-adds (measured)
_DUAL_RATIO = 0.5  # the dual route when m(m + n) <= this x n² (see dual_is_cheaper)
_COMPACT_BLOCK = 256  # columns per block when compacting (a block of 256 x n floats stays in cache)


@dataclass(frozen=True)
class EASEParams:
    """``l2`` is λ; ``dropout`` p (0 ≤ p < 1) selects DLAE when > 0; see the module docstring."""

    l2: float = 250.0
    dropout: float = 0.25
    max_items: int = 20_000
    keep_per_item: int = 1024

    def validate(self) -> None:
        if not self.l2 > 0:
            raise BadInput(f"EASE l2 must be > 0, got {self.l2}")
        if not 0 <= self.dropout < 1:
            raise BadInput(f"EASE dropout must be in [0, 1), got {self.dropout}")
        if self.max_items < 2 or self.keep_per_item < 1:
            raise BadInput("EASE max_items must be >= 2 and keep_per_item >= 1")


def _symmetrize_upper(p: np.ndarray) -> None:
    """Copy the upper triangle of the square ``p`` into its lower triangle, in place, block by block.

    Off-diagonal blocks are transposed copies; a diagonal block takes its own transpose below the diagonal
    through one precomputed mask (``copyto(where=)``), not fancy indexing of its index pairs (6x faster).
    """
    n = p.shape[0]
    below = np.tri(min(n, _SYM_BLOCK), k=-1, dtype=bool)
    for j0 in range(0, n, _SYM_BLOCK):
        j1 = min(n, j0 + _SYM_BLOCK)
        p[j0:j1, :j0] = p[:j0, j0:j1].T
        block = p[j0:j1, j0:j1]
        np.copyto(block, block.T, where=below[: j1 - j0, : j1 - j0])


def gram_matrix(x: sp.csr_matrix) -> np.ndarray:
    """XᵀX as a dense float32 matrix, by whichever product is cheaper for ``x``.

    The sparse product costs per pair of items in a row (Σ nnz_r², each an indexed insert, then a dense copy);
    the sparse-dense product costs per nonzero x items (a streamed multiply-add), done here a block of columns
    at a time (each block's dense columns bounded by ``_DENSE_BLOCK`` floats). Rows of whole user histories
    (hundreds of items) favour the second: 0.17 s against 0.42 s at ml-latest-small's 6,278 movies; same-day
    sessions, with few items per row, the first (0.16 s against 0.18 s). Entries are counts, exact in float32
    either way: both products give the same matrix bit for bit.
    """
    n = x.shape[1]
    per_row = np.diff(x.indptr).astype(np.int64)
    if int(per_row @ per_row) * _PAIR_COST <= x.nnz * n:
        sparse: np.ndarray = (x.T @ x).toarray().astype(np.float32, copy=False)
        return sparse
    xt = x.T.tocsr()
    width = max(1, _DENSE_BLOCK // max(1, x.shape[0]))
    if width >= n:  # one block: the product is the matrix
        return np.asarray(xt @ x.toarray(), dtype=np.float32)
    xc = x.tocsc()
    out = np.empty((n, n), dtype=np.float32)
    for c0 in range(0, n, width):
        c1 = min(n, c0 + width)
        out[:, c0:c1] = xt @ xc[:, c0:c1].toarray()
    return out


def _primal_inverse(x: sp.csr_matrix, l2: float, dropout: float) -> tuple[np.ndarray, np.ndarray]:
    """(P, Λ) through the items x items system: Cholesky of XᵀX + Λ and its inverse (potrf, potri), in place."""
    gram = gram_matrix(x)
    if not gram.flags.f_contiguous:  # symmetric: its Fortran-ordered view, which LAPACK overwrites without a copy
        gram = gram.T
    diag = np.diagonal(gram).astype(np.float64)
    lam = l2 + (dropout / (1.0 - dropout)) * diag
    gram[np.diag_indices_from(gram)] += lam.astype(np.float32)
    potrf, potri = sl.lapack.get_lapack_funcs(("potrf", "potri"), (gram,))
    chol, info = potrf(gram, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise BadInput(f"EASE: the regularised Gram matrix is not positive definite (LAPACK info {info})")
    inv, info = potri(chol, lower=False, overwrite_c=True)
    if info != 0:
        raise BadInput(f"EASE: inversion failed (LAPACK info {info})")
    return inv, lam


def _dual_inverse(x: sp.csr_matrix, l2: float, dropout: float) -> tuple[np.ndarray, np.ndarray]:
    """(P, Λ) through the rows x rows system (Woodbury): P = Λ⁻¹ − Λ⁻¹Xᵀ(I + XΛ⁻¹Xᵀ)⁻¹XΛ⁻¹.

    With K = I + XΛ⁻¹Xᵀ = LLᵀ (m x m, float64) and Cᵀ = L⁻¹XΛ⁻¹ (m x n), P = Λ⁻¹ − CCᵀ: one triangular solve
    (m²n) and one symmetric rank-m product (``syrk``, n²m, float32) instead of n³. Only the upper triangle of
    CCᵀ is formed; the diagonal comes from the float64 Cᵀ (exact enough for plain EASE, which divides by it).
    """
    dense = x.toarray().astype(np.float64, copy=False)
    diag = np.einsum("ij,ij->j", dense, dense)  # diag(XᵀX)
    lam = l2 + (dropout / (1.0 - dropout)) * diag
    scaled = dense * (1.0 / lam)[None, :]  # XΛ⁻¹
    inner = scaled @ dense.T
    inner[np.diag_indices_from(inner)] += 1.0
    del dense
    try:
        chol = sl.cholesky(inner, lower=True, overwrite_a=True, check_finite=False)
    except np.linalg.LinAlgError as exc:
        raise BadInput(f"EASE: the regularised dual system is not positive definite ({exc})") from None
    ct = sl.solve_triangular(chol, scaled, lower=True, overwrite_b=True, check_finite=False)  # Cᵀ
    corner = np.einsum("ij,ij->j", ct, ct)
    ct32 = ct.astype(np.float32)
    del ct, scaled
    inv = sl.blas.ssyrk(-1.0, ct32.T, trans=0, lower=0)  # −CCᵀ, upper triangle, Fortran order
    inv[np.diag_indices_from(inv)] = (1.0 / lam - corner).astype(np.float32)
    return inv, lam


def dual_is_cheaper(rows: int, items: int) -> bool:
    """Whether the rows x rows system is the cheaper way to P: its m²n + n²m multiply-adds against n³ with a
    margin (``_DUAL_RATIO``: the primal's LAPACK runs at about the same rate per multiply-add as ``syrk``)."""
    return rows > 0 and rows * (rows + items) <= _DUAL_RATIO * items * items


def inverse_gram(x: sp.csr_matrix, l2: float, dropout: float) -> tuple[np.ndarray, np.ndarray]:
    """(P, Λ): the inverse of XᵀX + Λ in float32 and the diagonal Λ, by the cheaper of two exact routes.

    Items x items (primal): Cholesky of the n x n system, inverted in place. Rows x rows (dual, Woodbury): when
    X has clearly fewer rows than columns (ml-latest-small's 582 users x 5,943 movies at its 2018 cut: 0.5 s
    against 2.7 s on one core). Both give P to float32 rounding (test: the same weights to 1e-5).
    """
    m, n = x.shape
    inv, lam = _dual_inverse(x, l2, dropout) if dual_is_cheaper(m, n) else _primal_inverse(x, l2, dropout)
    _symmetrize_upper(inv)
    return inv, lam


def _expand(rows: np.ndarray, values: np.ndarray, scale: np.ndarray, n: int) -> np.ndarray:
    """Stored arrays of a block of items back to dense rows: row j holds item j's n input weights (float32)."""
    inputs = np.zeros((len(scale), n), dtype=np.float32)
    np.put_along_axis(inputs, rows.astype(np.intp), values.astype(np.float32) * scale[:, None], axis=1)
    return inputs


class EASE:
    """A fitted EASE/DLAE model over the catalogue ``item_ids`` (sorted external movie ids)."""

    def __init__(self, params: EASEParams, item_ids: np.ndarray, weights: np.ndarray) -> None:
        self.params = params
        self.item_ids = np.asarray(item_ids, dtype=np.int64)
        self.weights = weights  # dense float32 (n x n); column j holds the weights of the inputs of item j
        self.stored: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # the arrays it was loaded from

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @classmethod
    def fit(cls, x: sp.csr_matrix, item_ids: np.ndarray, params: EASEParams) -> EASE:
        """Fit on the binary matrix ``x`` (rows x len(item_ids)); items must already fit ``max_items``."""
        params.validate()
        if x.shape[1] != len(item_ids):
            raise BadInput("EASE: the interaction matrix and the item ids differ in size")
        if x.shape[1] > params.max_items:
            raise BadInput(f"EASE: {x.shape[1]} items exceed max_items {params.max_items}; prune first")
        start = time.perf_counter()
        inv, lam = inverse_gram(x, params.l2, params.dropout)
        inv = inv.T  # symmetric, and LAPACK returns Fortran order: the transpose is the C-contiguous view
        if params.dropout > 0:
            inv *= (-lam).astype(np.float32)[None, :]
        else:
            inv /= (-np.diagonal(inv)).copy()[None, :]
        np.fill_diagonal(inv, 0.0)
        log_event(log, "ease_fit", items=x.shape[1], rows=x.shape[0], nnz=x.nnz, l2=params.l2,
                  dropout=params.dropout, seconds=round(time.perf_counter() - start, 3))  # fmt: skip
        return cls(params, item_ids, inv)

    def scores(self, x: sp.csr_matrix) -> np.ndarray:
        """x·B for a block of history rows (float32, rows x items)."""
        return np.asarray(x @ self.weights, dtype=np.float32)

    def pair_weights(self, hist: np.ndarray, rec: np.ndarray) -> np.ndarray:
        """B[hist[b, l], rec[b, r]] as (b, l, r): how much history item l adds to recommended item r."""
        weights: np.ndarray = self.weights[hist[:, :, None], rec[:, None, :]]
        return weights

    # -------------------------------------------------------------- storage
    def _compact(self, in_place: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, values, scale): per column j, its kept input rows, float16 values / scale[j], and scale[j].

        Column blocks at a time: each block of columns is transposed into rows (item j's inputs), and its
        ``keep`` largest magnitudes are selected there. A block stays in cache where whole-matrix passes (a
        transposed copy, its absolute values, the selection) each stream n² floats through memory: 5x faster
        at 5,700 items, and no n² temporaries. ``in_place``: each block of ``weights`` is then overwritten with
        what loading the stored arrays gives back (``_expand``), so no second n x n matrix is made.
        """
        n = self.n_items
        keep = min(self.params.keep_per_item, n)
        index = np.uint16 if n <= np.iinfo(np.uint16).max else np.int32
        rows = np.empty((n, keep), dtype=index)
        values = np.empty((n, keep), dtype=np.float16)
        scale = np.empty(n, dtype=np.float32)
        for j0 in range(0, n, _COMPACT_BLOCK):
            j1 = min(n, j0 + _COMPACT_BLOCK)
            inputs = np.ascontiguousarray(self.weights[:, j0:j1].T)  # row j: the weights of item j's inputs
            if keep < n:
                top = np.argpartition(np.abs(inputs), n - keep, axis=1)[:, n - keep :]
                top.sort(axis=1)  # column j's kept input rows, ascending
            else:
                top = np.broadcast_to(np.arange(n)[None, :], inputs.shape)
            kept = np.take_along_axis(inputs, top, axis=1)
            block_scale = np.abs(kept).max(axis=1)
            block_scale[block_scale == 0] = 1.0
            rows[j0:j1], values[j0:j1], scale[j0:j1] = top, kept / block_scale[:, None], block_scale
            if in_place:
                self.weights[:, j0:j1] = _expand(rows[j0:j1], values[j0:j1], scale[j0:j1], n).T
        return rows, values, scale

    @classmethod
    def _from_compact(cls, params: EASEParams, item_ids: np.ndarray, rows: np.ndarray, values: np.ndarray,
                      scale: np.ndarray) -> EASE:  # fmt: skip
        n = len(item_ids)
        if rows.shape != values.shape or rows.shape[0] != n or len(scale) != n:
            raise BadInput(f"EASE arrays do not match ({rows.shape}, {values.shape}, {n} items)")
        weights = np.empty((n, n), dtype=np.float32)
        for j0 in range(0, n, _COMPACT_BLOCK):  # item j's inputs as a row of a block, written as column j
            j1 = min(n, j0 + _COMPACT_BLOCK)
            weights[:, j0:j1] = _expand(rows[j0:j1], values[j0:j1], scale[j0:j1], n).T
        model = cls(params, item_ids, weights)
        model.stored = (rows, values, scale)  # saving it again writes these, not a second compaction
        return model

    def compact(self) -> EASE:
        """In place: the weights become exactly what ``save`` then ``load`` gives back (what is evaluated is what
        is served), and the stored arrays are kept for ``save``. Returns the model itself."""
        if self.stored is None:
            self.stored = self._compact(in_place=True)
        return self

    def save(self, directory: Path) -> None:
        """Each item's ``keep_per_item`` largest input weights (by magnitude), float16 with a float32 scale."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        rows, values, scale = self.stored if self.stored is not None else self._compact()
        np.save(directory / "ease_item_ids.npy", self.item_ids, allow_pickle=False)
        np.save(directory / "ease_rows.npy", rows, allow_pickle=False)
        np.save(directory / "ease_values.npy", values, allow_pickle=False)
        np.save(directory / "ease_scale.npy", scale, allow_pickle=False)
        meta = {"format_version": FORMAT_VERSION, "params": asdict(self.params), "n_items": self.n_items,
                "kept_per_item": int(rows.shape[1])}  # fmt: skip
        (directory / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: Path) -> EASE:
        directory = Path(directory)
        meta = read_meta(
            directory,
            META,
            FORMAT_VERSION,
            missing=f"{directory} is not a saved EASE model: {META} is missing",
            unsupported="unsupported EASE format",
        )
        arrays = [np.load(directory / f"ease_{name}.npy", allow_pickle=False)
                  for name in ("item_ids", "rows", "values", "scale")]  # fmt: skip
        return cls._from_compact(EASEParams(**meta["params"]), *arrays)
