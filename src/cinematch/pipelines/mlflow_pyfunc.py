"""A CineMatch version as an MLflow pyfunc model: top-N lists and predicted ratings from its own model files.

Imported only when MLflow is on (it subclasses ``mlflow.pyfunc.PythonModel``). The logged model holds the
version's folder as the artifact ``version``; loading it needs ``cinematch`` installed, as serving does.

``predict`` takes a DataFrame with ``user_id`` and, optionally, ``movie_id``:

* with ``movie_id``: one row per pair, ``user_id, movie_id, predicted_rating, fallback`` (the rating model;
  ``fallback`` marks an unknown user or movie, as `cinematch predict` does);
* without: ``user_id, rank, movie_id, score``, the top ``n`` (param ``n``, default 10) of the ranking model
  from the movies each user rated in training (kept with the rating model), those movies excluded. A user the
  model does not know gets the movies most rated in training (score NaN). The stored history holds which
  movies were rated, not the ratings, so a ranking model that weighs its inputs by rating sees them unweighted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from mlflow.pyfunc.model import PythonModel

from cinematch.core.errors import BadInput
from cinematch.recommender.als import ALSModel
from cinematch.recommender.interactions import Histories, histories
from cinematch.recommender.ranker import Ranker
from cinematch.recommender.registry import RANKING_DIR

ARTIFACT = "version"
DEFAULT_N = 10


class VersionModel:
    """The rating model, the ranking model (None for versions from before ranking models) and the history."""

    def __init__(self, folder: Path) -> None:
        self.als = ALSModel.load(folder)
        self.ranker = Ranker.load(folder / RANKING_DIR) if (folder / RANKING_DIR).exists() else None
        self.history: Histories | None = None
        if self.ranker is not None:
            counts = np.diff(self.als.seen_indptr)
            seen = pa.table({"user_id": np.repeat(self.als.user_ids, counts),
                             "movie_id": self.als.item_ids[self.als.seen_indices],
                             "rating": np.ones(len(self.als.seen_indices))})  # fmt: skip
            self.history = histories(seen, self.ranker.item_ids, self.als.user_ids)
        order = np.lexsort((self.als.item_ids, -self.als.item_popularity))
        self.popular = self.als.item_ids[order]

    def ratings(self, users: np.ndarray, movies: np.ndarray) -> pd.DataFrame:
        predicted, fallback = self.als.predict(users, movies)
        return pd.DataFrame({"user_id": users, "movie_id": movies, "predicted_rating": predicted,
                             "fallback": fallback})  # fmt: skip

    def top_n(self, users: np.ndarray, n: int) -> pd.DataFrame:
        if n < 1:
            raise BadInput(f"n must be >= 1, got {n}")
        if self.ranker is None or self.history is None:
            ids, scores = self.als.recommend(users, n=n, exclude_seen=True)
        else:
            ids, scores, _ = self.ranker.recommend(self.history, users, n, because=False, fallback=self.popular)
        valid = ids.reshape(-1) >= 0
        return pd.DataFrame({"user_id": np.repeat(users, n)[valid],
                             "rank": np.tile(np.arange(1, n + 1, dtype=np.int32), len(users))[valid],
                             "movie_id": ids.reshape(-1)[valid],
                             "score": scores.reshape(-1)[valid]}).reset_index(drop=True)  # fmt: skip


def answer(model: VersionModel, frame: pd.DataFrame, n: int = DEFAULT_N) -> pd.DataFrame:
    """The pyfunc's answer to ``frame`` (see the module docstring)."""
    if "user_id" not in frame.columns:
        raise BadInput(f"the input needs a user_id column (and optionally movie_id); got {list(frame.columns)}")
    users = frame["user_id"].to_numpy(dtype=np.int64)
    if "movie_id" in frame.columns:
        return model.ratings(users, frame["movie_id"].to_numpy(dtype=np.int64))
    return model.top_n(users, n)


class CineMatchPyfunc(PythonModel):
    """The pyfunc wrapper: loads the version folder from the model's artifacts once, then answers frames."""

    def load_context(self, context: Any) -> None:
        self.model = VersionModel(Path(context.artifacts[ARTIFACT]))

    # typed as a DataFrame: MLflow then infers no schema from the hint (a frame with or without movie_id)
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return answer(self.model, model_input, int((params or {}).get("n", DEFAULT_N)))
