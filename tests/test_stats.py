"""The one bootstrap helper (indexer/stats.py) behind the layout, classifier and encoder evaluations."""

from __future__ import annotations

import numpy as np

from indexer.stats import bootstrap_ci


def test_interval_brackets_the_estimate_and_is_seeded():
    x = np.array([1.0] * 70 + [0.0] * 30)
    ci = bootstrap_ci(len(x), lambda i: {"mean": float(x[i].mean())}, resamples=500, seed=1)
    lo, hi = ci["mean"]
    assert lo < 0.7 < hi and 0.55 < lo and hi < 0.85
    assert bootstrap_ci(len(x), lambda i: {"mean": float(x[i].mean())}, resamples=500, seed=1) == ci


def test_nan_resamples_are_left_out_and_empty_inputs_give_none():
    x = np.array([0.0, 1.0])
    ci = bootstrap_ci(2, lambda i: {"never": float("nan"), "first": float(x[i][0])}, resamples=50)
    assert ci["never"] is None and ci["first"] == [0.0, 1.0]
    assert bootstrap_ci(0, lambda i: {"m": 1.0}) == {}
