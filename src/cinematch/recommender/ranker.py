"""The served top-N model: one ranking model (EASE, session EASE, iALS) or a weighted blend of them.

Every component scores a user from the user's current history over one shared catalogue. A blend adds the
components' scores after standardising each per user (z-scores over the catalogue), with weights chosen on
validation data (``cinematch.recommender.tuning``). Items the user has rated are never recommended.

``because`` names up to two movies of the user's history that contributed most to each recommendation: the
exact additive contributions x_ui·B_ij of the EASE-family components (divided by the user's score scale, as
in the blend), or, for a model without an EASE component, the history items whose iALS factors are most
similar to the recommended item's. Only positive contributions are named.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from cinematch.core.errors import BadInput
from cinematch.recommender.als_solver import default_threads
from cinematch.recommender.ease import EASE
from cinematch.recommender.ials import IALS, one_blas_thread
from cinematch.recommender.interactions import Histories
from cinematch.recommender.model_files import read_meta
from cinematch.recommender.norm_bound import FIRST_STAGE, NormIndex, top_n_inner
from cinematch.recommender.padded import padded, row_blocks, values
from cinematch.recommender.top_n import top_n_chunked

META = "ranker.json"
FORMAT_VERSION = 1
KINDS = ("ease", "session_ease", "ials")
BECAUSE = 2
_SCORE_ELEMENTS = 16_000_000  # users x items float32 scores per block (64 MB)
# Norm-bound stages and explanations work in blocks whose largest temporary stays near 8 MB of float32: under
# glibc's largest mmap threshold (32 MB) a freed block's memory is reused by the next one instead of fresh pages
# being mapped and faulted in each time (on this kind of virtual machine first touches cost more than the
# arithmetic; 150,000 users' lists with explanations: 11.1 s -> 8.0-9.0 s, BENCHMARKS.md).
_STAGE_ELEMENTS = 2_000_000  # users x first-stage items per block of the norm-bound path
_BECAUSE_ELEMENTS = 2_000_000  # users x history x (factors, or n per EASE component) per explanation block


@dataclass
class Component:
    kind: str  # one of KINDS
    model: EASE | IALS
    weight: float = 1.0


@dataclass
class Ranker:
    """Components over one catalogue; ``rating_weight`` β weights EASE inputs by 1 + β·(rating − user mean)."""

    components: list[Component]
    rating_weight: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)  # how it was chosen (stored in ranker.json)

    def __post_init__(self) -> None:
        if not self.components:
            raise BadInput("a ranker needs at least one component")
        ids = self.components[0].model.item_ids
        for c in self.components[1:]:
            if not np.array_equal(c.model.item_ids, ids):
                raise BadInput("ranker components must share one catalogue")
        self.item_ids = ids

    @property
    def name(self) -> str:
        used = [c.kind for c in self.components if c.weight != 0]
        return used[0] if len(used) == 1 else "blend(" + "+".join(used) + ")"

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    # -------------------------------------------------------------- scoring
    def _inputs(self, binary: sp.csr_matrix, ratings: sp.csr_matrix | None) -> sp.csr_matrix:
        """EASE inputs: 1 per rated item, or 1 + β·(rating − the user's mean rating) when β > 0."""
        if not self.rating_weight or ratings is None or ratings.nnz == 0:
            return binary
        counts = np.diff(ratings.indptr)
        means = np.asarray(ratings.sum(axis=1)).ravel() / np.maximum(counts, 1)
        out = ratings.copy()
        out.data = (1.0 + self.rating_weight * (ratings.data - np.repeat(means, counts))).astype(np.float32)
        return out

    def _parts(
        self, binary: sp.csr_matrix, ratings: sp.csr_matrix | None, folded: dict[int, np.ndarray] | None = None
    ) -> list[tuple[Component, np.ndarray]]:
        """Each used component's scores; ``folded`` holds iALS user factors already solved for these rows."""
        x = self._inputs(binary, ratings)
        out = []
        for c in self.components:
            if c.weight == 0:
                continue
            if folded is not None and id(c) in folded and isinstance(c.model, IALS):
                out.append((c, folded[id(c)] @ c.model.item_factors.T))
            else:
                out.append((c, c.model.scores(x if c.kind != "ials" else binary)))
        return out

    def _alone_ials(self) -> tuple[int, IALS] | None:
        """(component id, model) of the one used component when it is an iALS model (its lists need no full
        score matrix), else None."""
        used = [c for c in self.components if c.weight != 0]
        return (id(used[0]), used[0].model) if len(used) == 1 and isinstance(used[0].model, IALS) else None

    @staticmethod
    def _scale(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = s.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
        std = s.std(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
        return mean, np.where(std > 0, std, np.float32(1.0))

    def scores(self, binary: sp.csr_matrix, ratings: sp.csr_matrix | None = None) -> np.ndarray:
        """Ranking scores (rows x catalogue) of history rows; one component's raw scores, or the z-blend."""
        parts = self._parts(binary, ratings)
        if len(parts) == 1:
            return parts[0][1]
        total = np.zeros_like(parts[0][1])
        for comp, s in parts:
            total += self._standardized(s, *self._scale(s), comp.weight)
        return total

    @staticmethod
    def _standardized(s: np.ndarray, mean: np.ndarray, std: np.ndarray, weight: float) -> np.ndarray:
        """weight·(s − mean)/std, computed in ``s`` itself (a component's own fresh score matrix): no temporaries
        the size of the block (on a virtual machine their fresh pages cost more than the arithmetic)."""
        s -= mean
        s *= np.float32(weight)
        s /= std
        return s

    def recommend(
        self,
        hist: Histories,
        users: np.ndarray,
        n: int = 10,
        because: bool = True,
        fallback: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(item ids, scores, because ids) for ``users``: (u, n), (u, n), (u, n, 2); -1 / NaN where empty.

        ``hist`` must be indexed by this ranker's catalogue; its rated items are excluded. Users without any
        history get ``fallback`` (external ids, best first; e.g. popular and recent movies) with NaN scores.
        """
        if not np.array_equal(hist.item_ids, self.item_ids):
            raise BadInput("histories must be built over the ranker's catalogue")
        users = np.asarray(users, dtype=np.int64)
        binary, ratings = hist.rows(users), hist.rating_rows(users)
        out = (np.full((len(users), n), -1, np.int64), np.full((len(users), n), np.nan, np.float64),
               np.full((len(users), n, BECAUSE), -1, np.int64))  # fmt: skip
        counts = np.diff(binary.indptr)
        # iALS fold-in of every user in one solver call (per block, its fixed costs added up to minutes)
        folded = {id(c): c.model.user_factors(binary) for c in self.components
                  if c.weight != 0 and isinstance(c.model, IALS)}  # fmt: skip
        # one iALS model: exact lists by norm bounds over the items sorted by factor norm (norm_bound), no full
        # score matrix; otherwise users in blocks within the score budget, by history length (little padding)
        alone = self._alone_ials()
        index = NormIndex.build(alone[1].item_factors) if alone is not None else None
        per_block = max(
            1, _STAGE_ELEMENTS // FIRST_STAGE if index is not None else _SCORE_ELEMENTS // max(1, self.n_items)
        )
        order = np.argsort(counts, kind="stable")
        blocks = np.array_split(order, -(-len(order) // per_block)) if len(order) else []

        def block(rows: np.ndarray) -> None:
            xb, rb = binary[rows], ratings[rows]
            scales: dict[int, np.ndarray]  # per component (by id): the factor of its scores in the blend
            if alone is not None and index is not None:
                idx, vals = top_n_inner(index, folded[alone[0]][rows], xb, n)
                self._write(rows, idx, vals, xb, rb, {alone[0]: np.ones((len(rows), 1), np.float32)}, because, out)
                return
            parts = self._parts(xb, rb, {key: f[rows] for key, f in folded.items()})
            if len(parts) == 1:
                total, scales = parts[0][1], {id(parts[0][0]): np.ones((len(rows), 1), np.float32)}
            else:
                total = np.zeros_like(parts[0][1])
                scales = {}
                for comp, s in parts:
                    mean, std = self._scale(s)
                    total += self._standardized(s, mean, std, comp.weight)
                    scales[id(comp)] = np.float32(comp.weight) / std
            r = np.repeat(np.arange(len(rows)), np.diff(xb.indptr))
            total[r, xb.indices] = -np.inf
            idx, vals = top_n_chunked(total, n)
            self._write(rows, idx, vals, xb, rb, scales, because, out)

        # one block per core at a time, BLAS single-threaded: most of a block's work is single-threaded NumPy,
        # and waking BLAS threads for the many tiny GEMMs of the explanations costs more than it saves
        threads = min(len(blocks), default_threads())
        with one_blas_thread():
            if threads <= 1:
                for rows in blocks:
                    block(rows)
            else:
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(block, blocks))
        if fallback is not None:
            fill_cold(out[0], out[1], counts == 0, fallback)
        return out

    def _write(
        self,
        rows: np.ndarray,
        idx: np.ndarray,
        vals: np.ndarray,
        xb: sp.csr_matrix,
        rb: sp.csr_matrix,
        scales: dict[int, np.ndarray],
        because: bool,
        out: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> None:
        """A block's lists (catalogue columns ``idx``) into ``out`` as item ids, scores and explanations."""
        out[0][rows] = np.where(idx >= 0, self.item_ids[np.maximum(idx, 0)], -1)
        out[1][rows] = vals
        if because and xb.nnz:
            out[2][rows] = self._because(xb, self._inputs(xb, rb), idx, scales)

    def _because(
        self, xb: sp.csr_matrix, inputs: sp.csr_matrix, idx: np.ndarray, scales: dict[int, np.ndarray]
    ) -> np.ndarray:
        """Top contributing history items (external ids) per recommended slot, (rows, n, 2)."""
        n = idx.shape[1]
        out = np.full((xb.shape[0], n, BECAUSE), -1, np.int64)
        eases = [c for c in self.components if c.weight != 0 and c.kind != "ials"]
        counts = np.diff(xb.indptr)
        # the largest temporary: EASE's weights (rows, history, n) per component, iALS's gathered factors
        # (rows, history, factors)
        ials = None if eases else next(c.model for c in self.components if c.weight != 0)
        width = max(n, ials.item_factors.shape[1]) if isinstance(ials, IALS) else n * len(eases)
        for sub in row_blocks(counts, width, budget=_BECAUSE_ELEMENTS):
            cols, valid = padded(xb, sub, fill=0)
            rec = np.maximum(idx[sub], 0)
            if eases:
                weight_in = values(inputs, sub, valid)
                w = np.zeros((len(sub), cols.shape[1], n), np.float32)
                for comp in eases:
                    w += comp.model.pair_weights(cols, rec) * scales[id(comp)][sub][:, :, None]
                w *= weight_in[:, :, None]
            else:
                assert isinstance(ials, IALS)
                w = ials.pair_weights(cols, rec)
            w[~valid] = -np.inf
            # BECAUSE passes of argmax (first position of the maximum): a stable descending sort's first picks
            picks, best_values = [], []
            for _ in range(min(BECAUSE, w.shape[1])):
                j = w.argmax(axis=1)[:, None, :]  # (b, 1, n)
                picks.append(j)
                best_values.append(np.take_along_axis(w, j, axis=1))
                np.put_along_axis(w, j, -np.inf, axis=1)
            top, best = np.concatenate(picks, axis=1), np.concatenate(best_values, axis=1)  # (b, take, n)
            take = top.shape[1]
            ids = np.where(best > 0, self.item_ids[np.take_along_axis(cols[:, :, None], top, axis=1)], -1)
            ids = np.where((idx[sub] >= 0)[:, None, :], ids, -1)
            out[sub, :, :take] = ids.transpose(0, 2, 1)
        return out

    # -------------------------------------------------------------- storage
    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for c in self.components:
            c.model.save(directory / c.kind)
        meta = {"format_version": FORMAT_VERSION, "name": self.name, "rating_weight": self.rating_weight,
                "components": [{"kind": c.kind, "weight": c.weight} for c in self.components],
                "n_items": self.n_items, "info": self.info}  # fmt: skip
        (directory / META).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Ranker:
        directory = Path(directory)
        meta = read_meta(
            directory,
            META,
            FORMAT_VERSION,
            missing=f"{directory} holds no ranking model ({META} missing)",
            unsupported="unsupported ranking model format",
        )
        comps = []
        for spec in meta["components"]:
            kind = spec["kind"]
            if kind not in KINDS:
                raise BadInput(f"{directory}: unknown ranking component {kind!r}")
            model: EASE | IALS = IALS.load(directory / kind) if kind == "ials" else EASE.load(directory / kind)
            comps.append(Component(kind, model, float(spec["weight"])))
        return cls(comps, float(meta.get("rating_weight", 0.0)), meta.get("info", {}))


def fill_cold(ids: np.ndarray, scores: np.ndarray, cold: np.ndarray, fallback: np.ndarray) -> None:
    """In place: the rows ``cold`` (users without a history in the catalogue) get ``fallback`` with NaN scores."""
    if not len(fallback):
        return
    take = min(ids.shape[1], len(fallback))
    ids[cold] = -1
    ids[np.ix_(np.flatnonzero(cold), np.arange(take))] = np.asarray(fallback[:take], np.int64)[None, :]
    scores[cold] = np.nan
