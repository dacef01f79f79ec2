"""Steps 2 and 4, chrome: bars at the edges, caption bands and dividers, and blur fill, which are not feeds."""

from __future__ import annotations

import numpy as np

from indexer.layout.frames import Frames, box_blur, corr_rows
from indexer.layout.order import median_all
from indexer.layout.params import LayoutParams


def trim_bars(F: Frames, p: LayoutParams) -> tuple[int, int, int, int]:
    """Active box (x0, y0, x1, y1): without uniform, constant bars at the edges."""
    g = F.g
    row_std = g.std(axis=2)  # (T, h)
    row_mean = g.mean(axis=2)
    col_std = g.std(axis=1)  # (T, w)
    col_mean = g.mean(axis=1)
    row_peak, col_peak = row_std.max(axis=0), col_std.max(axis=0)
    row_bar = (row_peak < p.bar_std) & (row_mean.std(axis=0) < p.bar_tstd)
    col_bar = (col_peak < p.bar_std) & (col_mean.std(axis=0) < p.bar_tstd)

    def span(bar: np.ndarray, peak: np.ndarray) -> tuple[int, int]:
        n = len(bar)
        a = 0
        while a < n and bar[a]:
            a += 1
        b = n
        while b > a and bar[b - 1]:
            b -= 1
        if b - a < n * 0.2:  # (nearly) all bar: a blank video; keep the whole frame
            return 0, n
        # A bar is one colour in most of its lines (compression noise sits at its edge only); a flat
        # but textured feed (asphalt, sky, water) passes the loose per-line test yet is a picture.
        if a and median_all(peak[:a]) >= p.bar_flat:
            a = 0
        if b < n and median_all(peak[b:]) >= p.bar_flat:
            b = n
        return a, b

    y0, y1 = span(row_bar, row_peak)
    x0, x1 = span(col_bar, col_peak)
    return x0, y0, x1, y1



def is_chrome(st: dict[str, float], rel: float, p: LayoutParams) -> bool:
    """Not a feed: a bar (one colour) or a static, mostly flat band (caption, title)."""
    static = st["motion"] < p.static_motion and st["change"] < p.chrome_change
    blank = st["texture"] < p.min_texture  # no detail at all: a bar with noise, a blurred band
    return st["flat"] >= 0.95 or (static and (blank or st["flat"] >= p.chrome_flat))



def fill_of(F: Frames, box, direction: str, q: int) -> tuple[tuple[int, int, int, int], float] | None:
    """The feed box, and how alike its bands are, if box is one feed centred between magnified copies
    of itself with ``q`` one of its edges (blur fill: a 16:9 clip on a 9:16 canvas over a blurred,
    enlarged copy of itself, the most common reframing of short video). None if q cannot be an edge.

    The fill is the clip scaled to cover the canvas, so it is the feed magnified about the centre by
    canvas extent / feed extent: each band pixel is predicted from the feed, and the prediction and
    the band, both blurred, are correlated per sampled frame (median over frames; the weaker band).
    The canvas is the box, or the whole frame where a dark, still band was trimmed as a bar. Two
    unrelated feeds stacked give 0.62 at most on the dev seeds, blur fill 0.9-1.0.
    """
    keys = F.keys
    x0, y0, x1, y1 = box
    n = F.h
    if direction == "cols":  # work on rows: transpose the picture and the box
        keys = keys.transpose(0, 2, 1)
        x0, y0, x1, y1 = y0, x0, y1, x1
        n = F.w
    best = None
    for lo, hi in {(y0, y1), (0, n)}:
        c = (lo + hi) / 2
        d = abs(q - c)
        fa, fb = round(c - d), round(c + d)
        if fb - fa < 8 or fa < y0 or fb > y1 or (fa - y0 < 4 and y1 - fb < 4):
            continue
        m = (hi - lo) / (fb - fa)
        cx = (x0 + x1) / 2
        alike = []
        for a, b in ((y0, fa), (fb, y1)):
            if b - a < 4:
                continue
            yy, xx = np.mgrid[a:b, x0:x1]
            ys = np.clip(np.round((yy - c) / m + c).astype(int), fa, fb - 1)
            xs = np.clip(np.round((xx - cx) / m + cx).astype(int), x0, x1 - 1)
            pred = box_blur(keys[:, ys, xs], 9).reshape(len(keys), -1)
            band = box_blur(keys[:, a:b, x0:x1], 9).reshape(len(keys), -1)
            alike.append(median_all(corr_rows(pred, band)))
        feed = (x0, fa, x1, fb) if direction == "rows" else (fa, x0, fb, x1)
        if best is None or min(alike) > best[1]:
            best = (feed, min(alike))
    return best
