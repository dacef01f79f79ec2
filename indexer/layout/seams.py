"""Step 3, seams: straight cuts across the picture that persist over time, with nothing continuing across."""

from __future__ import annotations

import numpy as np

from indexer.layout.features import TRACE, seam_features, trace
from indexer.layout.frames import Frames, corr_rows
from indexer.layout.order import median, median_all, quantile, quantile_all
from indexer.layout.params import LayoutParams
from indexer.layout.scorer import active_scorer


def seam_scores(g: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per boundary, over frames: step across it (median along the line) and its ratio to neighbours.

    g: (T, h, w). axis=1: boundaries between rows (horizontal seams); axis=2: between columns.
    Returns (step, ratio), each (T, n) for boundary index 1..n-1 at position i (between i-1 and i+1).
    """
    if axis == 2:
        g = g.transpose(0, 2, 1)
    # central difference over 2 px: seams blended over one row by scaling still show
    d = np.abs(g[:, 2:, :] - g[:, :-2, :])  # (T, n-2, L): boundary at row i+1
    step = median(d, axis=2)  # (T, n-2)
    T, m = step.shape
    # neighbourhood baseline: median step of rows 3..10 away on both sides
    pad = np.pad(step, ((0, 0), (10, 10)), mode="edge")
    neigh = np.stack([pad[:, 10 + k: 10 + k + m] for k in (-10, -8, -6, -4, 4, 6, 8, 10)], axis=0)
    base = median(neigh, axis=0)
    ratio = step / (base + 2.0)
    return step, ratio



def continuity(g: np.ndarray, m: np.ndarray, pos: int, k: int = 3,
                exclude: tuple[int, ...] = ()) -> tuple[float, float]:
    """Does the picture continue across boundary ``pos`` (rows of g: (T, n, L))?

    (structure, co-motion): the correlation along the line of edge profiles
    k rows above and below, and of motion just above and below. Structures
    that cross a natural edge (a leg over a floor line) and motion on both
    sides at the same places make both high; two unrelated feeds give ~0.
    """
    n = g.shape[1]
    a, b = max(0, pos - k), min(n - 1, pos + k)
    ga = np.abs(np.diff(g[:, a, :], axis=1))
    gb = np.abs(np.diff(g[:, b, :], axis=1))
    if exclude:  # places along the line to leave out (where another cut crosses it)
        keep = np.ones(ga.shape[1], bool)
        for e in exclude:
            keep[max(0, e - 4): e + 4] = False
        ga, gb = ga[:, keep], gb[:, keep]
    structure = median_all(corr_rows(ga, gb))
    ma = m[:, max(0, pos - 6): max(1, pos - 2), :].mean(axis=1)
    mb = m[:, min(n - 1, pos + 2): min(n, pos + 6), :].mean(axis=1)
    if ma.shape != mb.shape or ma.size == 0:
        return structure, 0.0
    active = (ma.max(axis=-1) > 2.0) & (mb.max(axis=-1) > 2.0)
    comotion = float(np.mean(corr_rows(ma, mb)[active])) if active.any() else 0.0
    return structure, comotion


def divider(g: np.ndarray, pos: int, flat_std: float, widest: int = 4) -> tuple[int, int] | None:
    """Lines (first, last) of a thin stripe of one colour near boundary ``pos`` (rows of g: (T, n, L))
    with picture on both sides: a divider drawn between two feeds. None if there is none.

    A natural picture is rarely one colour along a line's whole length in every frame, least of all
    in a thin stripe between two textured areas. "One colour" is relative to the picture on each side
    (a thin divider scaled down is blended with the feeds beside it), and each side is judged on its
    own: a dark divider between a busy feed and a plain wall is flat next to both.
    """
    n = g.shape[1]
    lo, hi = max(0, pos - 6), min(n, pos + 7)
    sd = g[:, lo:hi, :].transpose(1, 0, 2).reshape(hi - lo, -1).std(axis=1)
    best = None
    for i in range(2, len(sd) - 2):
        for j in range(i, min(i + widest, len(sd) - 2)):
            # the two lines beside the stripe on each side: the outer one is clear of blending
            before, after = max(sd[i - 2], sd[i - 1]), max(sd[j + 1], sd[j + 2])
            # picture on both sides (in a flat plane, such as a colour difference, every line is flat),
            # the stripe well under both (a thin bar's lines are blended with the feed beside them)
            if min(before, after) < flat_std or sd[i:j + 1].max() >= 0.6 * min(before, after):
                continue
            a, b = lo + i, lo + j
            if abs(a + b - 2 * pos) > 8:  # near the boundary
                continue
            # the whole stripe (its two edges are the line), then the one nearest the boundary
            if best is None or (b - a, -abs(a + b - 2 * pos)) > (best[1] - best[0], -abs(sum(best) - 2 * pos)):
                best = (a, b)
    return best


def straightness(g: np.ndarray, pos: int, flat_std: float) -> float:
    """Fraction of the line (columns of g: (T, n, L)) whose strongest persistent step near boundary
    ``pos`` lies on it (±1 px). A cut between two feeds is exactly straight.

    Measured twice: on 2-px steps around ``pos``, and on 4-px steps around the best line within 2 px.
    A thin divider between two feeds (a few px of gap, blurred by scaling) makes two parallel steps;
    which one is stronger changes along the line, and only the wider step sees them as one edge.
    """
    d = np.abs(g[:, 2:, :] - g[:, :-2, :])  # boundary at row i+1
    lo, hi = max(0, pos - 4), min(d.shape[1], pos + 3)
    if hi <= lo:
        return 0.0
    win = median(d[:, lo:hi, :], axis=0)
    am = np.argmax(win, axis=0) + lo + 1
    narrow = float(np.mean(np.abs(am - pos) <= 1))
    stripe = divider(g, pos, flat_std)
    if stripe is not None:
        # the stripe's two edges are one line: the step on either side of it (and the blended lines
        # just outside) counts; one feed matching the divider's colour leaves only the other edge
        a, b = stripe
        narrow = max(narrow, float(np.mean((am >= a - 1) & (am <= b + 1))))
    d = np.abs(g[:, 4:, :] - g[:, :-4, :])  # boundary at row i+2
    lo, hi = max(0, pos - 6), min(d.shape[1], pos + 3)
    if hi <= lo:
        return narrow
    am = np.argmax(median(d[:, lo:hi, :], axis=0), axis=0) + lo + 2
    wide = max(float(np.mean(np.abs(am - c) <= 1)) for c in range(pos - 2, pos + 3))
    return max(narrow, wide)


def find_seams(F: Frames, box: tuple[int, int, int, int], axis: int, p: LayoutParams,
                moving: bool, need: float | None = None,
                crossing: tuple[int, ...] = ()) -> list[tuple[int, float, dict]]:
    """Seams (position in frame coordinates, score, details) inside box along one axis.

    ``crossing``: frame positions of lines that cross these seams (columns for rows seams), left out
    of the continuity test. Seams are sought in the grey picture; with ``p.chroma``, a seam found in
    a colour-difference plane stands where the grey picture accepted nothing within 4 px (its
    details say which plane).
    """
    out = _find_seams_in(F, "grey", box, axis, p, moving, need, crossing)
    if not p.chroma:
        return out
    for plane in ("cb", "cr"):
        for pos, sc, info in _find_seams_in(F, plane, box, axis, p, moving, need, crossing):
            near = [c for c in out if abs(c[0] - pos) <= 4]
            if "rejected" in info or any("rejected" not in c[2] for c in near):
                continue
            out = [c for c in out if abs(c[0] - pos) > 4] + [(pos, sc, {**info, "plane": plane})]
    return sorted(out, key=lambda c: c[0])


def _find_seams_in(F: Frames, plane: str, box: tuple[int, int, int, int], axis: int, p: LayoutParams,
                   moving: bool, need: float | None, crossing: tuple[int, ...]) -> list[tuple[int, float, dict]]:
    """Seams of one plane of the picture (see :func:`find_seams`)."""
    x0, y0, x1, y1 = box
    along = tuple(c - (x0 if axis == 1 else y0) for c in crossing)
    g = F.planes[plane][:, y0:y1, x0:x1]
    m = F.motion[:, y0:y1, x0:x1]
    if axis == 2:
        g, m = g.transpose(0, 2, 1), m.transpose(0, 2, 1)
    n = g.shape[1]
    if n < 24 or g.shape[2] < 8:
        return []
    step, ratio = seam_scores(g, 1)
    q = p.seam_quantile
    r = quantile(ratio, q, axis=0)
    s = quantile(step, q, axis=0)
    grid_cells = need is not None  # the lenient search for grid cuts inside feeds already found
    if need is None:
        need = p.seam_ratio if moving else p.static_seam_ratio
    ok = (r >= need) & (s >= p.seam_min_step)
    # Two feeds of one setting (two clips from one room, walls side by side) meet at a small step:
    # seek weaker candidates too; they must pass stricter tests below.
    weak_ok = not grid_cells and moving and p.weak_seam_ratio < need
    if weak_ok:
        ok |= (r >= p.weak_seam_ratio) & (s >= p.weak_min_step)
    margin = max(3, int(round(n * p.min_region)))
    cands: list[tuple[int, float, int]] = []
    for i in np.flatnonzero(ok):
        pos = int(i) + 1  # boundary between rows pos-1 and pos+1 → seam at pos (pixel row)
        if pos < margin or pos > n - margin:
            continue
        cands.append((pos, float(r[i]), int(i)))
    # non-maximum suppression: one seam per 4 px
    cands.sort(key=lambda c: -c[1])
    kept: list[tuple[int, float, dict]] = []
    off = y0 if axis == 1 else x0
    for pos, sc, i in cands:
        if any(abs(pos - k) <= 4 for k, _, _ in kept):
            continue
        info = _judge(g, m, pos, sc, p, moving, grid_cells, need, along)
        scorer = active_scorer(p) if p.seam_scorer else None
        if scorer is not None or TRACE.get() is not None:  # the features cost: only for a scorer or training
            rules_ok = "rejected" not in info
            feats = seam_features(F, box, axis, pos + off, ratio=sc, ratio_hi=quantile_all(ratio[:, i], 0.7),
                                  step=float(s[i]), straight=info["straight"], structure=info["structure"],
                                  comotion=info["comotion"], divider=divider(g, pos, p.bar_std) is not None,
                                  plane=plane, weak=bool(info.get("weak")), moving=moving, grid_cell=grid_cells)
            feats["rules"] = float(rules_ok)  # the rules' verdict is one of the scorer's inputs
            if scorer is not None:
                info["p"] = round(scorer.seam(feats), 3)
                if info["p"] < scorer.seam_threshold:
                    info["rejected"] = "scorer"
                else:
                    info.pop("rejected", None)
            trace("seam", box=list(box), axis=axis, pos=pos + off, plane=plane, grid_cell=grid_cells,
                  rules=rules_ok, features=feats, size=[F.w, F.h])
        kept.append((pos, sc, info))
    return sorted((pos + off, sc, info) for pos, sc, info in kept)


def _judge(g: np.ndarray, m: np.ndarray, pos: int, sc: float, p: LayoutParams, moving: bool, grid_cells: bool,
           need: float, along: tuple[int, ...]) -> dict:
    """The rules' verdict on one candidate: its measurements, and ``rejected`` with the reason if it is not a
    seam."""
    straight = straightness(g, pos, p.bar_std)
    # only an exactly straight line is taken for a divider whose crossings may be left out
    structure, comotion = continuity(g, m, pos, exclude=along if straight >= p.exact_straight else ())
    info = {"structure": round(structure, 2), "comotion": round(comotion, 2), "straight": round(straight, 2)}
    strong = sc >= p.strong_seam and moving  # a still picture gives no motion evidence: no leniency
    # a natural edge: tilted, curved, or not the strongest step everywhere
    # (a still picture has only its edges to go by: its seams must be straighter)
    least = p.min_straight_strong if strong else p.min_straight if moving else p.min_straight_static
    # Nothing continues across the line (no structure, no co-motion while things move): the step
    # may wander off it where the two sides happen to match. Not for grid cuts inside feeds, whose
    # other evidence is already lenient.
    if moving and not grid_cells and structure < p.no_structure and comotion < p.max_comotion:
        least = min(least, p.min_straight_apart_strong if strong else p.min_straight_apart)
    weak = sc < need
    if weak:
        info["weak"] = True
        least = max(least, p.weak_straight)
    if straight < least:
        info["rejected"] = "not straight"
        return info
    # a natural edge: the picture continues across it
    # Motion alone does not make an exactly straight line with no structure across it continuous:
    # two unrelated feeds each with their subject in the middle move at the same places.
    motion_only = straight >= p.exact_straight and structure < p.no_structure
    moves_along = comotion >= (p.max_comotion_strong if strong else p.max_comotion) and not motion_only
    # a strong seam may have some structure or some co-motion across it, not much of both
    joint = strong and not motion_only and structure + comotion >= p.max_joint_strong
    if moves_along or joint or structure >= (p.max_structure_strong if strong else p.max_structure):
        info["rejected"] = "continuous"
    return info


def segment_seam(g: np.ndarray, m: np.ndarray, axis: int, pos: int, a: int, b: int):
    """Seam statistics of one side of a rectangle: (ratio, step, structure, comotion)."""
    if axis == 2:
        g, m = g.transpose(0, 2, 1), m.transpose(0, 2, 1)
    n = g.shape[1]
    lo, hi = max(0, pos - 12), min(n, pos + 13)
    sub, msub = g[:, lo:hi, a:b], m[:, lo:hi, a:b]
    if sub.shape[1] < 5 or sub.shape[2] < 4:
        return 0.0, 0.0, 1.0, 1.0
    step, ratio = seam_scores(sub, 1)
    i = min(max(pos - lo - 1, 0), step.shape[1] - 1)
    q = 0.3
    r = quantile_all(ratio[:, max(0, i - 1): i + 2].max(axis=1), q)
    st = quantile_all(step[:, max(0, i - 1): i + 2].max(axis=1), q)
    # at two distances: a side on the edge of a thin stripe in one picture (a frame, a shelf's edge)
    # reads the stripe itself 3 px away, and the picture continuing across it only further off
    both = [continuity(sub, msub, pos - lo, k=k) for k in (3, 5)]
    return r, st, max(c for c, _ in both), max(m_ for _, m_ in both)
