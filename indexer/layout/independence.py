"""Step 6, independence: do the regions found move and cut on their own?"""

from __future__ import annotations

from typing import Any

import numpy as np

from indexer.layout.frames import Box, Frames


def independence(F: Frames, boxes: list[tuple[int, int, int, int]]) -> dict[str, Any]:
    """Do the regions move and cut independently? Signals per region, compared pairwise."""
    if len(boxes) < 2:
        return {}
    mot = []  # per region, per run: motion
    chg = []  # per region, per consecutive key pair: change
    for x0, y0, x1, y1 in boxes:
        mot.append(F.motion[:, y0:y1, x0:x1].mean(axis=(1, 2)))
        k = F.keys[:, y0:y1, x0:x1]
        chg.append(np.abs(np.diff(k, axis=0)).mean(axis=(1, 2)) if len(k) > 1 else np.zeros(0))
    mot = np.array(mot)
    chg = np.array(chg)
    cuts_apart = 0
    motion_apart = 0
    n = len(boxes)
    for i in range(n):
        for j in range(i + 1, n):
            if chg.shape[1]:
                a, b = chg[i], chg[j]
                cuts_apart += int(np.sum(((a > 25) & (b < 8)) | ((b > 25) & (a < 8))))
            ma, mb = mot[i].mean(), mot[j].mean()
            if max(ma, mb) > 3.0 and min(ma, mb) < 0.25 * max(ma, mb):
                motion_apart += 1
    return {
        "cuts_apart": cuts_apart,
        "motion_apart_pairs": motion_apart,
        "region_motion": [round(float(m), 2) for m in mot.mean(axis=1)],
    }


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or a.std() < 1e-6 or b.std() < 1e-6:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def pair_features(F: Frames, a: Box, b: Box, a_hole: Box | None = None, b_hole: Box | None = None) -> dict[str, float]:
    """How unlike two regions are over time: what tells two feeds from two parts of one picture.

    Two feeds cut, move and light up on their own; the parts of one picture share its camera (a
    pan, a cut, a flash moves them together) and its look. Per sampled point: motion, change to the
    next point, brightness and colour, detail.
    """
    sa = {k: F.series(k, a, a_hole) for k in ("motion", "change", "grey", "cb", "cr", "texture")}
    sb = {k: F.series(k, b, b_hole) for k in ("motion", "change", "grey", "cb", "cr", "texture")}
    ca, cb_ = sa["change"], sb["change"]
    cuts = float(np.sum(((ca > 25) & (cb_ < 8)) | ((cb_ > 25) & (ca < 8)))) if len(ca) else 0.0
    ma, mb = float(sa["motion"].mean()), float(sb["motion"].mean())
    ta, tb = float(sa["texture"].mean()), float(sb["texture"].mean())
    return {
        "motion_corr": _corr(sa["motion"], sb["motion"]),
        "change_corr": _corr(ca, cb_),
        "grey_corr": _corr(sa["grey"], sb["grey"]),
        "cuts_apart": cuts,
        "motion_gap": abs(float(np.log1p(ma) - np.log1p(mb))),
        "motion_min": min(ma, mb),
        "texture_gap": abs(float(np.log1p(ta) - np.log1p(tb))),
        "grey_gap": float(np.mean(np.abs(sa["grey"] - sb["grey"]))),
        "colour_gap": float(np.mean(np.abs(sa["cb"] - sb["cb"]) + np.abs(sa["cr"] - sb["cr"]))),
    }
