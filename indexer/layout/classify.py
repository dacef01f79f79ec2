"""The whole analysis: sampled runs → seams, chrome, split, insets, independence → one layout."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from indexer.layout.chrome import is_chrome, trim_bars
from indexer.layout.frames import Frames, region_stats
from indexer.layout.independence import independence
from indexer.layout.insets import find_inset
from indexer.layout.params import DEFAULT_PARAMS, LayoutParams, LayoutResult
from indexer.layout.sampling import sample_runs
from indexer.layout.split import split_box, tree_leaves
from indexer.video import VideoReader


def box_to_px(box, sx: float, sy: float, W: int, H: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    X0, Y0 = int(round(x0 * sx)), int(round(y0 * sy))
    X1, Y1 = min(W, int(round(x1 * sx))), min(H, int(round(y1 * sy)))
    return X0, Y0, X1 - X0, Y1 - Y0


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def classify_runs(runs: list[np.ndarray], width: int, height: int,
                  params: LayoutParams = DEFAULT_PARAMS) -> LayoutResult:
    """The layout from sampled runs (see :func:`sample_runs`) of a width x height video."""
    p = params
    F = Frames(runs)
    sx, sy = width / F.w, height / F.h
    active = trim_bars(F, p)
    gmot = float(F.motion.mean())
    gchg = float(np.abs(np.diff(F.keys, axis=0)).mean()) if F.n_runs > 1 else 0.0
    moving = gmot >= p.static_motion or gchg >= 3.0
    log: list = []
    tree = split_box(F, active, p, moving, 0, log)
    leaves = tree_leaves(tree)
    evidence: dict[str, Any] = {
        "active_box": list(box_to_px(active, sx, sy, width, height)),
        "sampled_points": F.n_runs,
        "frames": int(F.g.shape[0]),
        "moving": moving,
    }
    layout = "single_scene"
    regions = leaves
    strength = 0.0
    if len(leaves) >= 2:
        dirs = set()

        def walk(t):
            if t[0] != "leaf":
                dirs.add(t[0])
                for c in t[1]:
                    walk(c)

        walk(tree)
        if dirs == {"rows"}:
            layout = "vertical"
        elif dirs == {"cols"}:
            layout = "horizontal"
        else:
            layout = "grid"
        seam_scores = [sc for entry in log for _, sc in entry.get("seams", [])]
        strength = max(seam_scores, default=0.0)
        evidence["seams"] = log
    else:
        pip = find_inset(F, leaves[0], p, moving)
        if pip is not None:
            (xa, ya, xb, yb), score, weakest = pip
            inner = (xa, ya, xb, yb)
            st = region_stats(F, inner)
            alive = st["motion"] >= 0.5 or st["change"] >= 1.0
            if not is_chrome(st, 1.0, p) and st["texture"] > 2.0 and alive:
                layout = "picture-in-picture"
                regions = [leaves[0], inner]
                strength = weakest
                evidence["pip"] = {"box": list(box_to_px(inner, sx, sy, width, height)),
                                   "score": round(score, 3), **{k: round(v, 2) for k, v in st.items()}}
        if layout == "single_scene" and log:
            evidence["seams"] = log
    if layout != "single_scene":
        ind = independence(F, regions)
        evidence["independence"] = ind
        bonus = 0.5 * min(2, ind.get("cuts_apart", 0)) + 0.5 * min(1, ind.get("motion_apart_pairs", 0))
        confidence = _sigmoid(1.5 * (strength - p.seam_ratio) + 1.0 + bonus)
    else:
        # how close did anything come to a seam?
        near = 0.0
        for entry in log:
            for _, sc in entry.get("seams", []):
                near = max(near, sc)
        confidence = 1.0 - _sigmoid(1.5 * (near - p.seam_ratio) + 1.0) if near else 0.95
    px_regions = [box_to_px(b, sx, sy, width, height) for b in regions]
    return LayoutResult(layout, float(np.clip(confidence, 0.0, 1.0)), px_regions, evidence,
                        width=width, height=height)


def analyze_layout(video: str | Path | VideoReader, params: LayoutParams = DEFAULT_PARAMS) -> LayoutResult:
    """The layout of one video (a path, or an open :class:`VideoReader`, left open).

    Raises the reader's typed MediaErrors for files that cannot be decoded.
    """
    t0 = time.perf_counter()
    if isinstance(video, VideoReader):
        reader, own = video, False
    else:
        reader, own = VideoReader(video), True
    try:
        runs = sample_runs(reader, params)
        info = reader.info
    finally:
        if own:
            reader.close()
    res = classify_runs(runs, info.width, info.height, params)
    res.path = str(reader.path)
    res.seconds = time.perf_counter() - t0
    return res
