"""The sort-based median and quantile give numpy's numbers exactly (they replace np.median/np.quantile on the layout hot path)."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.layout.order import median, median_all, quantile, quantile_all


def _arrays():
    rng = np.random.default_rng(7)
    for dtype in (np.float32, np.float64):
        for shape in [(1,), (2,), (7,), (8,), (5, 9), (6, 4, 11), (3, 10, 12)]:
            yield rng.normal(size=shape).astype(dtype)
            # ties: few distinct values, as quantised pixel differences have
            yield rng.integers(0, 4, size=shape).astype(dtype)
    yield np.random.default_rng(1).integers(0, 255, size=(4, 6), dtype=np.uint8)


@pytest.mark.parametrize("x", list(_arrays()), ids=lambda a: f"{a.dtype}{a.shape}")
def test_median_matches_numpy(x: np.ndarray) -> None:
    for axis in range(x.ndim):
        want = np.median(x, axis=axis)
        got = median(x, axis=axis)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert median_all(x) == float(np.median(x))


@pytest.mark.parametrize("x", list(_arrays()), ids=lambda a: f"{a.dtype}{a.shape}")
@pytest.mark.parametrize("q", [0.0, 0.1, 0.3, 0.5, 0.7, 0.75, 0.9, 1.0])
def test_quantile_matches_numpy(x: np.ndarray, q: float) -> None:
    for axis in range(x.ndim):
        want = np.quantile(x, q, axis=axis)
        got = quantile(x, q, axis=axis)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert quantile_all(x, q) == float(np.quantile(x, q))


def test_empty_axis_is_an_error() -> None:
    with pytest.raises(ValueError):
        median(np.zeros((3, 0)), axis=1)
    with pytest.raises(ValueError):
        quantile(np.zeros((0, 3)), 0.5, axis=0)
