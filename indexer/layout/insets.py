"""Step 5, insets: a rectangle of persistent straight edges whose inside is a picture of its own."""

from __future__ import annotations

import math

import numpy as np

from indexer.layout.features import TRACE, inset_features, trace
from indexer.layout.frames import Frames
from indexer.layout.order import median, quantile
from indexer.layout.params import LayoutParams
from indexer.layout.scorer import active_scorer
from indexer.layout.seams import segment_seam


def find_inset(F: Frames, box, p: LayoutParams, moving: bool = True) -> tuple[tuple[int, int, int, int], float, float] | None:
    """The best rectangle of persistent straight edges inside box: (box, score, weakest side ratio)."""
    x0, y0, x1, y1 = box
    H, W = y1 - y0, x1 - x0
    if H < 32 or W < 32:
        return None
    q = p.seam_quantile

    def local_peak(e: np.ndarray) -> np.ndarray:
        """Persistent step that stands out from the steps 4-10 px away across it (axis 0)."""
        pad = np.pad(e, ((10, 10), (0, 0)), mode="edge")
        n = e.shape[0]
        neigh = np.stack([pad[10 + k: 10 + k + n] for k in (-10, -7, -4, 4, 7, 10)])
        return (e >= p.pip_edge) & (e >= p.pip_edge_ratio * (median(neigh, axis=0) + 2.0))

    # edges in any plane: an inset's side that matches the picture under it in brightness may not in colour
    planes = [F.planes[pl][:, y0:y1, x0:x1] for pl in (("grey", "cb", "cr") if p.chroma else ("grey",))]
    bh = np.zeros((H, W), bool)
    bv = np.zeros((H, W), bool)
    for c in planes:
        eh = quantile(np.abs(c[:, 2:, :] - c[:, :-2, :]), q, axis=0)  # (H-2, W): edge at row i+1
        ev = quantile(np.abs(c[:, :, 2:] - c[:, :, :-2]), q, axis=0)  # (H, W-2)
        bh[1:-1] |= local_peak(eh)
        bv[:, 1:-1] |= local_peak(ev.T).T
    # tolerate a one-pixel wobble of the edge
    bh = bh | np.roll(bh, 1, axis=0) | np.roll(bh, -1, axis=0)
    bv = bv | np.roll(bv, 1, axis=1) | np.roll(bv, -1, axis=1)
    min_w, min_h = int(W * p.pip_min_side), int(H * p.pip_min_side)
    ys = _pip_lines(bh, min_w, p)
    xs = _pip_lines(bv.T, min_h, p)
    # coverage of a side = edge pixels along it / its length, from running sums along each line;
    # the box's own borders count as fully covered (a pip touching the frame edge)
    ch = np.cumsum(np.pad(bh, ((0, 0), (1, 0))), axis=1).astype(np.float32)
    cv = np.cumsum(np.pad(bv, ((1, 0), (0, 0))), axis=0).astype(np.float32)
    ch[[0, H - 1]] = np.arange(W + 1)
    cv[:, [0, W - 1]] = np.arange(H + 1)[:, None]
    hrow = ch[ys][:, xs]  # (ny, nx): running sum of row ys[i] at column xs[j]
    hs = (hrow[:, None, :] - hrow[:, :, None]) / np.maximum(xs[None, :] - xs[:, None], 1)  # (ny, nx, nx)
    vcol = cv[ys][:, xs].T  # (nx, ny)
    vs = (vcol[:, None, :] - vcol[:, :, None]) / np.maximum(ys[None, :] - ys[:, None], 1)  # (nx, ny, ny)
    # Every rectangle [top i, bottom j, left u, right v] whose four sides lie inside the box and that is
    # large enough, as flat indices into the (ny, ny, nx, nx) grid in ascending order. Built from the
    # row pairs and column pairs that can qualify, not over the whole grid: the grid holds up to a million
    # rectangles of which a few percent qualify, and full-grid temporaries were a fifth of a pip video's time.
    ny, nx = len(ys), len(xs)
    rows = (ys[None, :] - ys[:, None] >= min_h) & (ys[:, None] > 0) & (ys[None, :] < H - 1)
    cols = (xs[None, :] - xs[:, None] >= min_w) & (xs[:, None] > 0) & (xs[None, :] < W - 1)
    flat = (np.flatnonzero(rows)[:, None] * (nx * nx) + np.flatnonzero(cols)[None, :]).ravel()
    I, J, U, V = np.unravel_index(flat, (ny, ny, nx, nx))
    YA, YB, XA, XB = ys[I], ys[J], xs[U], xs[V]
    area = (YB - YA) * (XB - XA) / (H * W)
    keep = (area >= p.pip_min_area) & (area <= p.pip_max_area)
    flat, I, J, U, V, YA, YB, XA, XB, area = (a[keep] for a in (flat, I, J, U, V, YA, YB, XA, XB, area))
    near = (YA < p.pip_near * H, YB > (1 - p.pip_near) * H - 1, XA < p.pip_near * W, XB > (1 - p.pip_near) * W - 1)
    covers = (hs[I, U, V], hs[J, U, V], vs[U, I, J], vs[V, I, J])  # top, bottom, left, right
    ok = np.ones(flat.shape, bool)
    for c, nr in zip(covers, near):
        ok = ok & (c >= np.where(nr, p.pip_cover_near, p.pip_cover))
    # rank by the weakest side away from the box border (sides near it are covered less)
    cover = np.full(ok.shape, np.inf, np.float32)
    for c, nr in zip(covers, near):
        cover = np.minimum(cover, np.where(nr, np.inf, c))
    score = np.where(np.isfinite(cover), cover, 0.0) + 0.1 * area
    # A second pass for an inset whose inner side matches the picture under it over much
    # of its length (the same wall, the same light): that side may be covered only pip_cover_faint.
    # Only two sides need be clear then, one across and one along, and every other side must still
    # be a step with nothing continuing across it.
    faint = np.zeros(ok.shape, np.int8)
    for c, nr in zip(covers, near):
        faint += (c < p.pip_cover) & ~nr
    ok_faint = faint == 1
    for c, nr in zip(covers, near):
        ok_faint = ok_faint & (c >= np.where(nr, p.pip_cover_near, p.pip_cover_faint))
    # ranked by the weakest of its other sides away from the border
    others = np.full(ok.shape, np.inf, np.float32)
    for c, nr in zip(covers, near):
        others = np.minimum(others, np.where(nr | (c < p.pip_cover), np.inf, c))
    score_faint = np.where(np.isfinite(others), others, 0.0) + 0.1 * area
    m = F.motion[:, y0:y1, x0:x1]
    memo: dict[tuple[int, int, int, int], tuple[bool, float, bool, bool]] = {}

    def side(axis: int, pos: int, a: int, b: int) -> tuple[bool, float, bool, bool]:
        """One side judged as a seam in every plane: (clear in any plane, largest ratio, a step with
        nothing across it in any plane, near the box border). Memoised: rectangles ranked next to each
        other share most of their sides, which is what makes ``pip_tries`` in the hundreds affordable."""
        key = (axis, pos, a, b)
        if key not in memo:
            per = [segment_seam(pg, m, axis, pos, a, b) for pg in planes]
            n = H if axis == 1 else W
            near_border = min(pos, n - 1 - pos) < p.pip_near * n
            # a clear step, no structure across it, and no motion across it (only very strong steps
            # are allowed some co-motion)
            clear = any(r >= p.seam_ratio and st >= p.seam_min_step and cs < p.max_structure
                        and cm < (p.max_comotion_strong if r >= p.strong_seam else p.max_comotion)
                        and (r < p.strong_seam or cs + cm < p.max_joint_strong)
                        for r, st, cs, cm in per)
            step = any(r >= (p.pip_weak_side if near_border else p.pip_faint_side) and cs < p.max_structure
                       and cm < p.max_comotion for r, _, cs, cm in per)
            memo[key] = (clear, max(r for r, _, _, _ in per), step, near_border,
                         max(st for _, st, _, _ in per), min(cs for _, _, cs, _ in per),
                         min(cm for _, _, _, cm in per))
        return memo[key][:4]

    def rules_pick():
        """The rules' inset: the best-ranked rectangle whose sides pass as seams (see the README)."""
        for cand, rank, faint_pass in ((ok, score, False), (ok_faint, score_faint, True)):
            for k in _ranked(cand, rank)[:p.pip_tries]:
                ya, yb, xa, xb = int(YA[k]), int(YB[k]), int(XA[k]), int(XB[k])
                clear4: list[bool] = []
                ratios: list[float] = []
                for axis, pos, a, b in ((1, ya, xa, xb), (1, yb, xa, xb), (2, xa, ya, yb), (2, xb, ya, yb)):
                    clear, r, step, near_border = side(axis, pos, a, b)
                    if not clear:
                        # first pass: a side may be unclear only near the box border, where it must still be
                        # a step (its continuity is measured on the few lines left before the border); a
                        # corner inset has two such sides. Faint-side pass: every unclear side is a step
                        # that nothing continues across.
                        allowed = step if faint_pass else near_border and r >= p.pip_weak_side
                        if not allowed:
                            break  # the rest of this rectangle's sides need not be judged
                    clear4.append(clear)
                    ratios.append(r)
                else:
                    # one clear side across and one along (the two inner sides of a corner inset)
                    if (clear4[0] or clear4[1]) and (clear4[2] or clear4[3]):
                        return (xa + x0, ya + y0, xb + x0, yb + y0), float(rank[k]), round(min(ratios), 2), int(k)
        return None

    def measure(k: int, least: int = 0):
        """Rectangle k measured for the scorer: (frame box, features, sides that are clear or steps); the
        features only when at least ``least`` sides are (they cost more than the sides)."""
        ya, yb, xa, xb = int(YA[k]), int(YB[k]), int(XA[k]), int(XB[k])
        sides = []
        for key in ((1, ya, xa, xb), (1, yb, xa, xb), (2, xa, ya, yb), (2, xb, ya, yb)):
            side(*key)
            sides.append(memo[key])  # (clear, ratio, step, near, step size, structure, co-motion)
        steps = sum(bool(clear or step) for clear, _, step, *_ in sides)
        inner = (xa + x0, ya + y0, xb + x0, yb + y0)
        if steps < least:
            return inner, None, steps
        f = inset_features(F, inner, box, [(r, st, cs, cm, clear, near) for clear, r, _, near, st, cs, cm in sides],
                           [float(c[k]) for c in covers], moving)
        return inner, f, steps

    scorer = active_scorer(p)
    if scorer is None:
        if TRACE.get() is not None:  # training: every candidate traced, the rules decide
            _scored(box, p, None, ok | ok_faint, np.maximum(score, score_faint), measure, F)
        picked = rules_pick()
        return picked[:3] if picked is not None else None
    found = _scored(box, p, scorer, ok | ok_faint, np.maximum(score, score_faint), measure, F)
    if found is not None or p.rules_inset_p is None:
        return found
    # A rectangle the rules accept (every side a seam) that the scorer did not measure (it ranks behind the
    # 40) or put under its threshold: taken when the scorer still finds it likely.
    picked = rules_pick()
    if picked is None:
        return None
    rect, f, _ = measure(picked[3])
    prob = float(scorer.insets([f])[0])
    return (rect, prob, picked[2]) if prob >= p.rules_inset_p else None


def _scored(box, p: LayoutParams, scorer, cand: np.ndarray, rank: np.ndarray, measure, F: Frames):
    """The learned scorer's pick: the best-ranked rectangles (``pip_scored`` of them with at least two sides
    that are steps) are measured in full and the likeliest inset above the scorer's threshold wins.
    Candidates are traced for training whether or not a scorer decides."""
    rows, rects, ranks = [], [], []
    for k in _ranked(cand, rank)[:p.pip_tries]:
        inner, f, steps = measure(int(k), least=2)
        if f is None:
            continue
        rows.append(f)
        rects.append(inner)
        ranks.append(float(rank[k]))
        if len(rows) >= p.pip_scored:
            break
    probs = scorer.insets(rows) if scorer is not None and rows else np.zeros(len(rows))
    for f, rect, pr in zip(rows, rects, probs):
        trace("inset", box=list(box), rect=list(rect), features=f, p=float(pr), size=[F.w, F.h])
    if scorer is None or not rows:
        return None
    # An inset shows at least pip_min_clear sides as clear steps; one clear side among faint ones is the edge
    # of a thing in the picture (the demo's single clip: p 0.89 with one clear side). Measured on the
    # traced sets: 1 inset of 102 lost on rand_train, none of 50 on rand_eval.
    probs = np.where([f["clear_sides"] >= p.pip_min_clear for f in rows], probs, 0.0)
    if probs.max() < scorer.inset_threshold:
        return None
    # Near-duplicates (a side one or two pixels off) score alike: among the likeliest, the one whose
    # sides are best covered by edges sits on the inset's real edges.
    close = np.flatnonzero(probs >= max(scorer.inset_threshold, probs.max() - 0.1))
    best = int(close[np.argmax(np.asarray(ranks)[close])])
    return rects[best], float(probs[best]), round(min(math.exp(rows[best]["log_ratio_min"]) - 1, 99.0), 2)


def _ranked(cand: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Positions of the candidates, best rank first; ties keep grid order (the order they were built in)."""
    idx = np.flatnonzero(cand)
    return idx[np.argsort(-rank[idx], kind="stable")]


def _pip_lines(b: np.ndarray, min_len: int, p: LayoutParams, most: int = 30) -> np.ndarray:
    """Rows of edge map b (one per line, along axis 1) that could hold a pip side, sorted.

    A side covered ``pip_cover`` (``pip_cover_faint`` for a corner inset's faint side) over its whole
    length has a window of ``min_len`` covered at least as well, so ranking lines by their best window
    misses no side that could pass, however its edge breaks up where the inset matches the picture
    under it. No two lines 1 px apart (the edge map is dilated by one), the ``most`` best; plus the
    best line near each border (covered less) and the borders themselves.
    """
    n = b.shape[0]
    cs = np.cumsum(np.pad(b, ((0, 0), (1, 0))), axis=1)
    best = (cs[:, min_len:] - cs[:, :-min_len]).max(axis=1) / max(min_len, 1)
    lines: list[int] = []
    for i in np.argsort(-best, kind="stable"):
        if best[i] < min(p.pip_cover, p.pip_cover_faint) or len(lines) >= most:
            break
        if all(abs(int(i) - j) > 1 for j in lines):
            lines.append(int(i))
    # A pip a few px from the border: its outer side's step cannot stand out from steps 4-10 px away
    # (some of those are the border itself), so few of its pixels pass. Offer the best line of each
    # border zone; the checks on the whole side still apply.
    zone = max(2, int(round(p.pip_near * n)))
    count = b.sum(axis=1)
    for lo, hi in ((1, zone), (n - 1 - zone, n - 1)):
        i = lo + int(np.argmax(count[lo:hi]))
        if count[i] >= p.pip_cover_near * min_len:
            lines.append(i)
    return np.array(sorted(set(lines) | {0, n - 1}))
