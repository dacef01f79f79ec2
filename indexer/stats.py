"""Percentile bootstrap intervals, one implementation for every evaluation (layout, classifier, encoder).

Hand-rolled rather than ``scipy.stats.bootstrap`` because the statistics here come as a dict of many
metrics computed together from one resample (per-class precision and recall, the confusion-derived
rates), and scipy's bootstrap takes one statistic per call, so each resample would be drawn and
scored once per metric; and scipy is not otherwise a dependency of the core install.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def bootstrap_ci(n: int, statistics: Callable[[np.ndarray], dict[str, float]], *, resamples: int = 1000,
                 seed: int = 0, level: float = 0.95) -> dict[str, list[float] | None]:
    """Per metric, the ``level`` percentile interval over ``resamples`` resamples of n items.

    ``statistics(idx)`` scores one resample, given the indices drawn with replacement. Values that
    are NaN in a resample (a class absent from it) are left out of that metric's interval; a metric
    with no value at all gets None, as does every metric when n is 0.
    """
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {}
    for _ in range(resamples if n else 0):
        for k, v in statistics(rng.integers(0, n, n)).items():
            samples.setdefault(k, []).append(v)
    lo = round((1 - level) / 2, 12)  # 0.025 exactly for 95 %, not 0.025000000000000022
    hi = round(1 - lo, 12)
    out: dict[str, list[float] | None] = {}
    for k, vals in samples.items():
        a = np.array([v for v in vals if v == v])
        out[k] = [float(np.quantile(a, lo)), float(np.quantile(a, hi))] if a.size else None
    return out
