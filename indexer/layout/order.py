"""Medians and quantiles along one axis, computed by a full sort.

Why not ``np.median`` / ``np.quantile``: both select with ``np.partition``
(introselect), which numpy does not vectorise, while ``np.sort`` on floats
uses its SIMD sorting network. On the layout detector's arrays (tens to a few
hundred values per row, thousands of rows) the sort is 4-7x faster, and the
detector spends about a quarter of its time in these reductions (measured
with cProfile over ``bench/layout.py``'s videos). The results are the same
numbers: the same order statistics combined with numpy's own formulas (the
mean of the two middle values; the 'linear' method's interpolation), which
``tests/test_layout_order.py`` checks against numpy, ties and NaN-free
float32/float64 inputs included. Inputs here never hold NaN (numpy would
propagate it; a sort puts it last).
"""

from __future__ import annotations

import numpy as np


def median(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``np.median(x, axis=axis)`` for NaN-free input, via a sort."""
    s = np.sort(x, axis=axis)
    n = s.shape[axis]
    if n == 0:
        raise ValueError("median of an empty axis")
    h = n // 2
    if n % 2:
        out = np.take(s, h, axis=axis)
        # np.median returns float64 for integer input and keeps float dtypes
        return out if np.issubdtype(out.dtype, np.floating) else out.astype(np.float64)
    pair = np.take(s, [h - 1, h], axis=axis)
    return np.mean(pair, axis=axis)


def quantile(x: np.ndarray, q: float, axis: int = 0) -> np.ndarray:
    """``np.quantile(x, q, axis=axis)`` (method 'linear') for NaN-free input and scalar q."""
    s = np.sort(x, axis=axis)
    n = s.shape[axis]
    if n == 0:
        raise ValueError("quantile of an empty axis")
    v = (n - 1) * float(q)
    lo = int(np.floor(v))
    hi = min(lo + 1, n - 1)
    a = np.take(s, lo, axis=axis)
    b = np.take(s, hi, axis=axis)
    if not np.issubdtype(a.dtype, np.floating):
        a, b = a.astype(np.float64), b.astype(np.float64)
    t = v - lo  # a Python float, as numpy keeps a scalar q's weight (it matters for float32 input)
    d = b - a
    # numpy's _lerp: a + d*t, but from the far end when t >= 0.5 (keeps it monotone and exact at t=1)
    return b - d * (1 - t) if t >= 0.5 else a + d * t


def median_all(x: np.ndarray) -> float:
    """``float(np.median(x))`` over every element (NaN for none, as numpy gives, without its warning)."""
    x = np.ravel(x)
    return float(median(x)) if x.size else float("nan")


def quantile_all(x: np.ndarray, q: float) -> float:
    """``float(np.quantile(x, q))`` over every element."""
    return float(quantile(np.ravel(x), q))
