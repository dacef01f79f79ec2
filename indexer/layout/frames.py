"""The sampled frames as arrays, and the measurements every step takes of them."""

from __future__ import annotations

from functools import cached_property

import numpy as np

from indexer.layout.order import median

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in analysis pixels


def gray(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


class Frames:
    """The sampled frames as float arrays: all frames, first of each run, motion per run."""

    def __init__(self, runs: list[np.ndarray]):
        rgb = np.concatenate(runs).astype(np.float32)  # (T, h, w, 3)
        self.rgb = rgb
        self.g = gray(rgb)  # (T, h, w)
        # colour-difference planes (BT.601 Cb, Cr without offset): two feeds of equal brightness
        # (a blue pool over grey asphalt) still differ in colour
        self.planes = {"grey": self.g, "cb": (rgb[..., 2] - self.g) * 0.564,
                       "cr": (rgb[..., 0] - self.g) * 0.713}
        self.n_runs = len(runs)
        self.run_len = runs[0].shape[0]
        g = self.g.reshape(self.n_runs, self.run_len, *self.g.shape[1:])
        self.keys = g[:, 0]  # (R, h, w)
        # motion inside runs: mean abs change between consecutive frames
        self.motion = np.abs(np.diff(g, axis=1)).mean(axis=1) if self.run_len > 1 else np.zeros_like(self.keys)
        self.h, self.w = self.g.shape[1:]

    @cached_property
    def _tables(self) -> dict[str, np.ndarray]:
        """Summed-area tables (a zero row and column in front) of what regions are compared by, one
        layer per sampled point: motion, change to the next point, grey, Cb, Cr, horizontal detail."""
        R = self.n_runs
        key = self.rgb.reshape(R, self.run_len, self.h, self.w, 3)[:, 0]
        cb = (key[..., 2] - self.keys) * 0.564
        cr = (key[..., 0] - self.keys) * 0.713
        tex = np.zeros_like(self.keys)
        tex[:, :, 1:] = np.abs(np.diff(self.keys, axis=2))
        change = np.abs(np.diff(self.keys, axis=0)) if R > 1 else np.zeros((0, self.h, self.w), np.float32)
        out = {}
        for name, a in (("motion", self.motion), ("change", change), ("grey", self.keys), ("cb", cb),
                        ("cr", cr), ("texture", tex)):
            t = np.zeros((a.shape[0], self.h + 1, self.w + 1), np.float64)
            t[:, 1:, 1:] = a.cumsum(axis=1).cumsum(axis=2)
            out[name] = t
        return out

    def series(self, name: str, box: Box, hole: Box | None = None) -> np.ndarray:
        """Per sampled point, the mean of ``name`` over ``box`` (less ``hole``, e.g. a ring around an inset)."""
        t = self._tables[name]

        def total(b: Box) -> np.ndarray:
            x0, y0, x1, y1 = b
            return t[:, y1, x1] - t[:, y0, x1] - t[:, y1, x0] + t[:, y0, x0]

        area = (box[2] - box[0]) * (box[3] - box[1])
        s = total(box)
        if hole is not None:
            s = s - total(hole)
            area -= (hole[2] - hole[0]) * (hole[3] - hole[1])
        return s / max(area, 1)


def corr_rows(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching rows of u and v (last axis); 0 for empty rows (a side of no length)."""
    if u.shape[-1] == 0:
        return np.zeros(u.shape[:-1])
    u = u - u.mean(axis=-1, keepdims=True)
    v = v - v.mean(axis=-1, keepdims=True)
    return (u * v).sum(-1) / (np.sqrt((u * u).sum(-1) * (v * v).sum(-1)) + 1e-6)


def region_stats(F: Frames, box: tuple[int, int, int, int]) -> dict[str, float]:
    x0, y0, x1, y1 = box
    g = F.g[:, y0:y1, x0:x1]
    med = median(g.reshape(len(g), -1), axis=1)[:, None, None]
    flat = float(np.mean(np.abs(g - med) < 3.0))
    motion = float(F.motion[:, y0:y1, x0:x1].mean())
    keys = F.keys[:, y0:y1, x0:x1]
    change = float(np.abs(np.diff(keys, axis=0)).mean()) if len(keys) > 1 else 0.0
    texture = float(np.abs(np.diff(g, axis=2)).mean()) if g.shape[2] > 1 else 0.0
    return {"flat": flat, "motion": motion, "change": change, "texture": texture}


def box_blur(a: np.ndarray, k: int) -> np.ndarray:
    """Mean over k x k windows of the last two axes (edges repeated), from summed-area tables."""
    r = k // 2
    lead = [(0, 0)] * (a.ndim - 2)
    c = np.pad(a, lead + [(r, r), (r, r)], mode="edge").cumsum(axis=-2).cumsum(axis=-1)
    c = np.pad(c, lead + [(1, 0), (1, 0)])  # a zero row and column in front: sums of empty windows
    h, w = a.shape[-2:]
    return (c[..., k:k + h, k:k + w] - c[..., :h, k:k + w] - c[..., k:k + h, :w] + c[..., :h, :w]) / (k * k)
