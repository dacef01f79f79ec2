"""Step 6, independence: do the regions found move and cut on their own?"""

from __future__ import annotations

from typing import Any

import numpy as np

from indexer.layout.frames import Frames


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
