"""Implicit ALS (Hu, Koren, Volinsky 2008) for top-N ranking, through the ``implicit`` library.

``implicit`` (benfred) is multi-threaded C++ with conjugate-gradient solves; BENCHMARKS.md times it beside
CineMatch's own NumPy ALS and Spark MLlib. With α = 1 every cell has confidence 1 and each half-step is one
ridge regression shared by all rows, solved exactly here in NumPy instead (``_fit_unit_confidence``; at 25M
ratings it needs under half the CPU time of ``implicit``'s iterations, and far less wall time on a busy machine).

A model keeps only its item factors: a user's factors are always recomputed from the user's current history
(one exact least-squares solve against the fixed item factors, "fold-in"), so a user who rated something
after training is served from that rating without retraining, and two model versions are compared on the
same histories.

Confidence: c_ui = ``alpha`` for a rated item (``implicit``'s convention: the matrix value times alpha), 1 for
the rest; preference 1 for rated items. ``reg_per_rating`` > 0 (the Spark MLlib convention, used for models
trained by the Spark engine) scales the ridge by the user's number of ratings in the fold-in.
"""

from __future__ import annotations

import functools
import itertools
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

from cinematch.core.errors import BadInput
from cinematch.core.log import get_logger, log_event
from cinematch.recommender.als_solver import default_threads
from cinematch.recommender.interactions import lookup
from cinematch.recommender.model_files import read_meta
from cinematch.recommender.padded import padded, row_blocks

log = get_logger(__name__)

META = "ials.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class IALSParams:
    factors: int = 64
    regularization: float = 10.0
    alpha: float = 1.0
    iterations: int = 15
    seed: int = 42
    reg_per_rating: bool = False  # Spark MLlib scales λ by the number of ratings; implicit does not

    def validate(self) -> None:
        if self.factors < 1 or self.iterations < 1:
            raise BadInput("iALS factors and iterations must be >= 1")
        if not (self.regularization > 0 and self.alpha > 0):
            raise BadInput("iALS regularization and alpha must be > 0")


@functools.cache
def _controller() -> ThreadpoolController:
    import implicit.cpu.als  # noqa: F401  (its libraries are loaded before the scan)

    return ThreadpoolController()  # built once: scanning the loaded libraries takes ~10 ms


def one_blas_thread() -> Any:
    """BLAS pinned to one thread while ``implicit`` runs its own threads (nested threading oversubscribes)."""
    return _controller().limit(limits=1, user_api="blas")


_FOLD_IN_ELEMENTS = 4_000_000  # padded users x history x factors per fold-in block (16 MB of float32 gathered)
# below this many interactions a fit is too small to pay for threads (their start-up and spin-waiting dominate)
_PARALLEL_NNZ = 20_000


def _library_model(params: IALSParams, threads: int = 0) -> Any:  # implicit ships no type stubs
    from implicit.cpu.als import AlternatingLeastSquares

    return AlternatingLeastSquares(factors=params.factors, regularization=params.regularization, alpha=params.alpha,
                                   iterations=params.iterations, random_state=params.seed, num_threads=threads,
                                   calculate_training_loss=False)  # fmt: skip


def _row_chunks(a: sp.csr_matrix, parts: int) -> list[sp.csr_matrix]:
    """``a`` cut into ``parts`` row ranges of about equal numbers of stored entries."""
    cuts = np.searchsorted(a.indptr, np.linspace(0, a.nnz, parts + 1)[1:-1]).tolist()
    bounds = [0, *cuts, a.shape[0]]
    return [a[lo:hi] for lo, hi in itertools.pairwise(bounds)]


def _shared_ridge(chunks: list[sp.csr_matrix], f: np.ndarray, lam: float, pool: ThreadPoolExecutor) -> np.ndarray:
    """Each row's ridge solution against ``f`` with unit confidences: (A·F)·(FᵀF + λI)⁻¹, one system for all."""
    e, q = np.linalg.eigh(f.T.astype(np.float64) @ f)
    rhs = np.vstack(list(pool.map(lambda c: c @ f, chunks))).astype(np.float64) @ q  # scipy releases the GIL
    solved: np.ndarray = ((rhs / (e + lam)) @ q.T).astype(np.float32)
    return solved


def _fit_unit_confidence(
    x: sp.csr_matrix, params: IALSParams, progress: Callable[[int], None] | None, init: np.ndarray | None = None
) -> np.ndarray:
    """Item factors of iALS with α = 1 by exact alternating solves (the objective ``implicit`` approximates
    with conjugate-gradient steps): P = X·Y·(YᵀY + λI)⁻¹, then Y = Xᵀ·P·(PᵀP + λI)⁻¹, from ``implicit``'s
    initialisation (uniform [0, 0.01)). Two sparse products per iteration, rows split across the cores.
    """
    x = sp.csr_matrix(x, dtype=np.float32)
    x.data[:] = 1.0
    threads = default_threads() if x.nnz >= _PARALLEL_NNZ else 1
    y = _initial(x.shape[1], params) if init is None else np.array(init, np.float32)
    users, items = _row_chunks(x, threads), _row_chunks(x.T.tocsr(), threads)
    with ThreadPoolExecutor(threads) as pool:
        for iteration in range(1, params.iterations + 1):
            y = _shared_ridge(items, _shared_ridge(users, y, params.regularization, pool), params.regularization, pool)
            if progress is not None:
                progress(iteration)
    return y


def _initial(n_items: int, params: IALSParams) -> np.ndarray:
    """``implicit``'s initialisation, seeded: uniform [0, 0.01)."""
    return np.random.default_rng(params.seed).random((n_items, params.factors), dtype=np.float32) * np.float32(0.01)


class IALS:
    """Item factors of an implicit ALS model over the catalogue ``item_ids``; users are folded in."""

    def __init__(self, params: IALSParams, item_ids: np.ndarray, item_factors: np.ndarray, trainer: str) -> None:
        self.params = params
        self.item_ids = np.asarray(item_ids, dtype=np.int64)
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        self.trainer = trainer
        self._gram = (self.item_factors.T.astype(np.float64) @ self.item_factors).astype(np.float32)
        norms = np.linalg.norm(self.item_factors, axis=1, keepdims=True)
        self._unit = self.item_factors / np.where(norms > 0, norms, 1.0)
        self._eigen: tuple[np.ndarray, np.ndarray] | None = None  # of YᵀY in float64, for α = 1

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @classmethod
    def fit(
        cls,
        x: sp.csr_matrix,
        item_ids: np.ndarray,
        params: IALSParams,
        progress: Callable[[int], None] | None = None,
        warm: tuple[np.ndarray, int] | None = None,
    ) -> IALS:
        """Fit on the binary user x item matrix ``x`` with ``implicit`` (all cores from 20k interactions, else one;
        BLAS pinned to one thread).

        ``warm``: (initial item factors, iterations) instead of the seeded initialisation and ``params.iterations``
        (``warm_start_factors``); the user factors start at zero. The model keeps ``params`` as chosen.
        """
        params.validate()
        start = time.perf_counter()
        init, iterations = warm if warm is not None else (None, params.iterations)
        run = replace(params, iterations=iterations)
        callback = (lambda epoch, _elapsed, _loss: progress(epoch + 1)) if progress else None
        trainer = "cinematch" if params.alpha == 1.0 and not params.reg_per_rating else "implicit"
        with one_blas_thread():
            if trainer == "cinematch":
                item_factors = _fit_unit_confidence(x, run, progress, init)
            else:
                model = _library_model(run, threads=1 if x.nnz < _PARALLEL_NNZ else 0)
                if init is not None:  # implicit starts from factors already set (its CG solver refines them)
                    model.item_factors = np.array(init, np.float32)
                    model.user_factors = np.zeros((x.shape[0], params.factors), np.float32)
                model.fit(x.astype(np.float32), show_progress=False, callback=callback)
                item_factors = np.asarray(model.item_factors)
        log_event(log, "ials_fit", users=x.shape[0], items=x.shape[1], nnz=x.nnz, factors=params.factors,
                  iterations=iterations, warm=init is not None, trainer=trainer,
                  seconds=round(time.perf_counter() - start, 3))  # fmt: skip
        return cls(params, item_ids, item_factors, trainer=trainer)

    def warm_start_factors(self, item_ids: np.ndarray, params: IALSParams) -> np.ndarray | None:
        """Initial item factors for a refit of the same parameters over ``item_ids``: this model's factors for the
        movies it knows, the seeded initialisation for new ones; None when the parameters differ (factors,
        regularization, alpha, ridge rule), as a fit from other factors would not be the same model."""
        same = ("factors", "regularization", "alpha", "reg_per_rating")
        if any(getattr(self.params, name) != getattr(params, name) for name in same):
            return None
        init = _initial(len(item_ids), params)
        pos, known = lookup(self.item_ids, np.asarray(item_ids, np.int64))
        init[known] = self.item_factors[pos[known]]
        return init

    def user_factors(self, x: sp.csr_matrix) -> np.ndarray:
        """Exact fold-in: p_u = (YᵀY + (α−1)·Σ y_i y_iᵀ + λ_u I)⁻¹ · α·Σ y_i over the user's rated items i.

        α = 1 shares one system (``_shared_system``); otherwise users are solved in padded blocks of similar
        history length, one batched GEMM and one batched solve each, the blocks spread over the cores (2.0x
        faster than ``implicit``'s ``recalculate_user`` on every user of 25M ratings, the same factors to 4.4e-5
        relative: BENCHMARKS.md).
        """
        x = sp.csr_matrix(x, dtype=np.float32)
        x.data[:] = 1.0
        n, k = x.shape[0], self.params.factors
        if n == 0 or x.nnz == 0:
            return np.zeros((n, k), np.float32)
        if self.params.alpha == 1.0:
            return self._shared_system(x)
        a = np.float32(self.params.alpha)
        y = np.vstack([self.item_factors, np.zeros((1, k), np.float32)])  # last row: padding sentinel
        counts = np.diff(x.indptr)
        out = np.zeros((n, k), np.float32)
        diag = np.arange(k)

        def solve(rows: np.ndarray) -> None:
            if counts[rows].max() == 0:
                return
            g = y[padded(x, rows, fill=self.n_items)[0]]  # (b, L, k)
            systems = np.matmul(g.transpose(0, 2, 1), g)
            systems *= a - 1
            systems += self._gram[None, :, :]
            lam = self.params.regularization * (np.maximum(counts[rows], 1) if self.params.reg_per_rating else 1)
            systems[:, diag, diag] += np.broadcast_to(lam, rows.shape)[:, None].astype(np.float32)
            out[rows] = np.linalg.solve(systems, (a * g.sum(axis=1))[:, :, None])[:, :, 0]

        blocks = list(row_blocks(counts, k, budget=_FOLD_IN_ELEMENTS))
        with one_blas_thread(), ThreadPoolExecutor(min(len(blocks), default_threads())) as pool:
            list(pool.map(solve, blocks))  # NumPy's matmul and solve release the GIL
        out[counts == 0] = 0.0
        return out

    def _shared_system(self, x: sp.csr_matrix) -> np.ndarray:
        """α = 1: a rated item's extra confidence α − 1 is 0, so every user's system is YᵀY + λ_u·I. With
        YᵀY = Q·diag(e)·Qᵀ once, p_u = Q·diag(1 / (e + λ_u))·Qᵀ·Σ y_i: all users in one sparse product and two
        small GEMMs, instead of one k x k solve per user (about 40x faster at 25M ratings)."""
        if self._eigen is None:
            y = self.item_factors.astype(np.float64)
            self._eigen = np.linalg.eigh(y.T @ y)
        e, q = self._eigen
        counts = np.diff(x.indptr)
        lam = self.params.regularization * (np.maximum(counts, 1) if self.params.reg_per_rating else 1.0)
        rhs = np.asarray(x @ self.item_factors, dtype=np.float64) @ q  # Σ y_i over rated items, in Q's basis
        out: np.ndarray = ((rhs / (e[None, :] + np.broadcast_to(lam, counts.shape)[:, None])) @ q.T).astype(np.float32)
        out[counts == 0] = 0.0
        return out

    def scores(self, x: sp.csr_matrix) -> np.ndarray:
        scores: np.ndarray = self.user_factors(x) @ self.item_factors.T
        return scores

    def pair_weights(self, hist: np.ndarray, rec: np.ndarray) -> np.ndarray:
        """Cosine similarity of item factors, (b, l, r): the history items most like each recommendation."""
        # batched GEMM (b tiny GEMMs)
        weights: np.ndarray = np.matmul(self._unit[hist], self._unit[rec].transpose(0, 2, 1))
        return weights

    # -------------------------------------------------------------- storage
    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "ials_item_ids.npy", self.item_ids, allow_pickle=False)
        np.save(directory / "ials_item_factors.npy", self.item_factors, allow_pickle=False)
        meta = {"format_version": FORMAT_VERSION, "params": asdict(self.params), "trainer": self.trainer,
                "n_items": self.n_items}  # fmt: skip
        (directory / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: Path) -> IALS:
        directory = Path(directory)
        meta = read_meta(
            directory,
            META,
            FORMAT_VERSION,
            missing=f"{directory} is not a saved iALS model: {META} is missing",
            unsupported="unsupported iALS format",
        )
        item_ids = np.load(directory / "ials_item_ids.npy", allow_pickle=False)
        factors = np.load(directory / "ials_item_factors.npy", allow_pickle=False)
        if factors.shape[0] != len(item_ids):
            raise BadInput(f"{directory}: iALS factors do not match the item ids")
        return cls(IALSParams(**meta["params"]), item_ids, factors, meta.get("trainer", "implicit"))
