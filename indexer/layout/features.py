"""What the detector measures about each candidate seam and inset, as named features.

The same numbers feed the rules' decision, the learned scorer (:mod:`indexer.layout.scorer`) and
its training (:mod:`indexer.layout.train`), so that what is trained is what runs. None of them
says *where* a candidate lies in the frame beyond how thin the pieces it leaves are: a detector
that knew where the generator put insets would learn the generator.

A trace (:data:`TRACE`) records every candidate with its features and where it lies, for training.
"""

from __future__ import annotations

import math
from contextvars import ContextVar

import numpy as np

from indexer.layout.frames import Box, Frames, region_stats
from indexer.layout.independence import pair_features

#: When set to a list, every judged candidate is appended to it (training and diagnostics).
TRACE: ContextVar[list | None] = ContextVar("layout_trace", default=None)

PAIR = ["motion_corr", "change_corr", "grey_corr", "cuts_apart", "motion_gap", "motion_min", "texture_gap",
        "grey_gap", "colour_gap"]
SIDES = ["flat", "motion", "change", "texture"]

SEAM_FEATURES = ["rules", "log_ratio", "log_ratio_hi", "log_step", "straight", "structure", "comotion", "divider",
                 "plane_colour", "weak", "moving", "grid_cell", "thin_side",
                 *[f"{s}_{k}" for s in SIDES for k in ("min", "max")], *PAIR]

INSET_FEATURES = ["log_ratio_min", "log_ratio_max", "log_step_min", "structure_max", "comotion_max", "clear_sides",
                  "near_sides", "cover_min", "cover_mean", "log_area", "log_aspect", "moving",
                  *[f"in_{s}" for s in SIDES], *[f"out_{s}" for s in SIDES], *PAIR]


def _log(x: float) -> float:
    return math.log1p(max(0.0, float(x)))


def sides_of(box: Box, axis: int, pos: int) -> tuple[Box, Box]:
    """The two pieces of ``box`` on either side of a seam at frame position ``pos``."""
    x0, y0, x1, y1 = box
    if axis == 1:
        return (x0, y0, x1, pos), (x0, pos, x1, y1)
    return (x0, y0, pos, y1), (pos, y0, x1, y1)


def seam_features(F: Frames, box: Box, axis: int, pos: int, *, ratio: float, ratio_hi: float, step: float,
                  straight: float, structure: float, comotion: float, divider: bool, plane: str, weak: bool,
                  moving: bool, grid_cell: bool) -> dict[str, float]:
    a, b = sides_of(box, axis, pos)
    lo, hi = (box[1], box[3]) if axis == 1 else (box[0], box[2])
    sa, sb = region_stats(F, a), region_stats(F, b)
    f = {"log_ratio": _log(ratio), "log_ratio_hi": _log(ratio_hi), "log_step": _log(step), "straight": straight,
         "structure": structure, "comotion": comotion, "divider": float(divider),
         "plane_colour": float(plane != "grey"), "weak": float(weak), "moving": float(moving),
         "grid_cell": float(grid_cell), "thin_side": min(pos - lo, hi - pos) / max(1, hi - lo)}
    for s in SIDES:
        f[f"{s}_min"], f[f"{s}_max"] = min(sa[s], sb[s]), max(sa[s], sb[s])
    f.update(pair_features(F, a, b))
    return f


def ring_around(inner: Box, box: Box, F: Frames) -> Box:
    """The rectangle around an inset that its surround is measured in (a margin of half its size)."""
    x0, y0, x1, y1 = inner
    mx, my = max(4, (x1 - x0) // 2), max(4, (y1 - y0) // 2)
    return (max(box[0], x0 - mx), max(box[1], y0 - my), min(box[2], x1 + mx), min(box[3], y1 + my))


def inset_features(F: Frames, inner: Box, box: Box, sides: list[tuple[float, float, float, float, bool, bool]],
                   covers: list[float], moving: bool) -> dict[str, float]:
    """``sides``: per side (ratio, step, structure, comotion, clear, near the border)."""
    x0, y0, x1, y1 = inner
    ring = ring_around(inner, box, F)
    s_in = region_stats(F, inner)
    outer = region_stats(F, ring)  # includes the inset: a cheap look at the surround
    ratios = [s[0] for s in sides]
    f = {"log_ratio_min": _log(min(ratios)), "log_ratio_max": _log(max(ratios)),
         "log_step_min": _log(min(s[1] for s in sides)), "structure_max": max(s[2] for s in sides),
         "comotion_max": max(s[3] for s in sides), "clear_sides": float(sum(s[4] for s in sides)),
         "near_sides": float(sum(s[5] for s in sides)), "cover_min": min(covers),
         "cover_mean": float(np.mean(covers)),
         "log_area": math.log((x1 - x0) * (y1 - y0) / max(1, (box[2] - box[0]) * (box[3] - box[1]))),
         "log_aspect": abs(math.log((x1 - x0) / max(1, y1 - y0))), "moving": float(moving)}
    for s in SIDES:
        f[f"in_{s}"], f[f"out_{s}"] = s_in[s], outer[s]
    f.update(pair_features(F, inner, ring, b_hole=inner))
    return f


def vector(names: list[str], f: dict[str, float]) -> np.ndarray:
    return np.array([float(f[n]) for n in names], dtype=np.float64)


def trace(kind: str, **record) -> None:
    t = TRACE.get()
    if t is not None:
        t.append({"kind": kind, **record})
