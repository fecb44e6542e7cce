"""Review sentiment from the VADER lexicon (vaderSentiment): compound scores in [-1, 1]."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

# VADER's own convention for the compound score: >= 0.05 positive, <= -0.05 negative, else neutral
POSITIVE = 0.05
NEGATIVE = -0.05


@lru_cache(maxsize=1)
def _analyzer() -> Any:  # loading the lexicon takes a moment: once per process
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def compound_scores(texts: Sequence[str | None]) -> np.ndarray:
    """VADER compound score of each text (0.0 for an empty or missing text).

    VADER scores one text per call (that is the library's API); callers score only reviews not scored before.
    """
    analyzer = _analyzer()
    return np.fromiter(
        (analyzer.polarity_scores(t)["compound"] if t else 0.0 for t in texts), dtype=np.float64, count=len(texts)
    )
