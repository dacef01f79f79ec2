"""The learned part of the detector: which candidate insets (and, optionally, seams) are real, from their
features.

A small ensemble of decision trees per kind (gradient boosting, trained by ``sludge eval train-layout``
from the randomized generator's videos, :mod:`indexer.layout.train`), kept as plain arrays in
``scorer.json`` beside this file and evaluated here with numpy: no library is needed to run it,
and the file says what it was trained on. Without the file (or with ``LayoutParams.use_scorer``
off) the rules decide alone.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from indexer.layout.features import INSET_FEATURES, SEAM_FEATURES, vector

DEFAULT_FILE = Path(__file__).with_name("scorer.json")


class TreeEnsemble:
    """Gradient-boosted trees as arrays: a prediction is the sum of the leaves reached, through a sigmoid."""

    def __init__(self, d: dict) -> None:
        self.features: list[str] = d["features"]
        self.base = float(d["base"])
        self.rate = float(d["learning_rate"])
        self.trees = [{k: np.asarray(v) for k, v in t.items()} for t in d["trees"]]

    def prob(self, rows: np.ndarray) -> np.ndarray:
        # compared in float32, as scikit-learn's trees compare (thresholds sit between float32 values)
        rows = np.atleast_2d(rows).astype(np.float32).astype(np.float64)
        raw = np.full(len(rows), self.base)
        idx = np.arange(len(rows))
        for t in self.trees:
            node = np.zeros(len(rows), dtype=np.int64)
            while True:
                left = t["left"][node]
                leaf = left < 0
                if leaf.all():
                    break
                go_left = rows[idx, np.maximum(t["feature"][node], 0)] <= t["threshold"][node]
                node = np.where(leaf, node, np.where(go_left, left, t["right"][node]))
            raw += self.rate * t["value"][node]
        return 1.0 / (1.0 + np.exp(-raw))


class Scorer:
    def __init__(self, d: dict, source: str = "") -> None:
        self.meta = d.get("meta", {})
        self.source = source
        self._seam = TreeEnsemble(d["seam"])
        self._inset = TreeEnsemble(d["inset"])
        if self._seam.features != SEAM_FEATURES or self._inset.features != INSET_FEATURES:
            raise ValueError(f"{source}: the scorer was trained on other features than this detector measures; "
                             "train it again (sludge eval train-layout)")
        self.seam_threshold = float(d["seam"]["threshold"])
        self.inset_threshold = float(d["inset"]["threshold"])

    def seam(self, features: dict[str, float]) -> float:
        return float(self._seam.prob(vector(SEAM_FEATURES, features))[0])

    def inset(self, features: dict[str, float]) -> float:
        return float(self._inset.prob(vector(INSET_FEATURES, features))[0])

    def insets(self, rows: list[dict[str, float]]) -> np.ndarray:
        if not rows:
            return np.zeros(0)
        return self._inset.prob(np.stack([vector(INSET_FEATURES, f) for f in rows]))


@lru_cache(maxsize=8)
def load_scorer(path: str | None = None) -> Scorer | None:
    p = Path(path) if path else DEFAULT_FILE
    if not p.is_file():
        return None
    return Scorer(json.loads(p.read_text()), str(p))


def active_scorer(params) -> Scorer | None:
    """The scorer the parameters ask for (``scorer_path``, else the packaged one), or None for rules alone."""
    if not getattr(params, "use_scorer", True):
        return None
    return load_scorer(getattr(params, "scorer_path", None))


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))
