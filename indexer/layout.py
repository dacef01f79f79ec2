"""Layout analysis: is a video one feed, or several feeds stacked on one screen?

No learned weights: pixels and motion only. Cheap enough to run on every
upload (a few short runs of frames, decoded near keyframes, analysed at about
224 px on the long side).

The algorithm, in short:

1. **Sampling.** ``n_runs`` points spread over the video; at each, keep
   ``run_len`` consecutive frames. Short videos are decoded in one pass; longer
   ones seek to the keyframe before each point (decoding at most ``max_lead``
   frames forward where an earlier point took that keyframe). Frames are scaled
   to the analysis size by the decoder's scaler.
2. **Bars.** Rows and columns at the edges that are uniform in space and
   constant in time (letterbox, pillarbox, borders) are trimmed: they never
   count as feeds or seams.
3. **Seams (recursive XY-cut).** In the active box, a row (column) boundary
   scores the median over the box's width (height) of the step across it,
   divided by the same statistic on nearby rows. A *seam* is a boundary whose
   score stays high in most sampled frames: a straight cut spanning the box
   that persists across time. While things move, weaker steps (two clips of
   one room side by side) are candidates too, held to stricter straightness.
   The box is split at its seams and each piece is analysed again (so grids
   and feeds with bars inside their cells are found).
4. **Chrome.** A piece that is static over time and mostly one colour (caption
   or title band, a bar between feeds) or static and thin is not a feed: it is
   dropped, and a seam that only separated it from the video does not count.
5. **Picture-in-picture.** If no seams split the active box, persistent
   straight edges are searched for a rectangle (four sides, or fewer where it
   touches the box) covering 2–50 % of the area whose inside moves, lying in a
   corner of the box (where insets sit; a rectangle elsewhere is a thing in the
   picture); the best ``pip_tries`` rectangles by edge coverage are judged side
   by side.
6. **Independence.** For each pair of feeds, the motion inside runs and the
   change between sampled times (scene cuts) are compared; cuts in one feed
   and not in the other, or motion in one while the other is still, are
   reported as evidence and raise the confidence. A whole-frame cut or a pan
   moves every region together and adds nothing.

Public API: :func:`analyze_layout` → :class:`LayoutResult` and :data:`LAYOUTS`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from indexer.errors import CorruptMediaError
from indexer.media import av_reason
from indexer.video import VideoReader

LAYOUTS = ("single_scene", "vertical", "horizontal", "picture-in-picture", "grid")
MULTI_FEED = frozenset(LAYOUTS[1:])


@dataclass(frozen=True)
class LayoutParams:
    """Every tunable of the detector, with the values tuned on the dev pool."""

    long_side: int = 224  # analysis size (long side, px)
    n_runs: int = 6  # sampled points over the video
    run_len: int = 3  # consecutive frames per point (motion)
    max_lead: int = 20  # at most this many frames decoded forward from a keyframe
    short_video_s: float = 12.0  # up to this long: one decoding pass; longer ones seek
    bar_std: float = 6.0  # a bar row/column: spatial std below this (grey levels) ...
    bar_tstd: float = 4.0  # ... and its mean varies less than this over time
    bar_flat: float = 1.5  # ... and the median line of a bar is flatter than this
    seam_ratio: float = 3.5  # boundary step / neighbouring steps, in most frames
    seam_quantile: float = 0.3  # "most frames": this low quantile over frames must pass
    seam_min_step: float = 7.0  # grey levels (median across the box), same quantile
    static_seam_ratio: float = 5.0  # stricter when nothing moves anywhere
    min_region: float = 0.08  # a piece narrower than this fraction of its box is not a feed
    chrome_flat: float = 0.55  # fraction of pixels near the piece's median colour: flat
    static_motion: float = 1.2  # mean abs grey change below this: static
    pip_edge: float = 7.0  # persistent edge strength (grey levels) for pip sides
    pip_cover: float = 0.7  # fraction of each side that must be a persistent edge
    pip_near: float = 0.06  # a pip side this close to the box border (fraction) ...
    pip_cover_near: float = 0.3  # ... needs only this edge coverage
    pip_min_side: float = 0.15  # pip box sides, fraction of the active box
    pip_max_area: float = 0.5
    pip_weak_side: float = 1.8  # a side near the border allowed to be unclear must still be a step
    pip_min_area: float = 0.02
    pip_tries: int = 500  # the best-covered rectangles whose sides are judged as seams (per pass)
    pip_corner: float = 0.1  # an inset lies within this fraction of a corner (where insets sit); it ...
    pip_cover_faint: float = 0.3  # ... may have one inner side covered this little ...
    pip_faint_side: float = 2.4  # ... if its step is this clear and nothing continues across any faint side
    max_depth: int = 1
    grid_cross_seam: float = 8.0  # crossing exact lines this strong are judged again without each other
    grid_seam_low: float = 2.0  # a grid cut may be weak in some cells ...
    grid_align: int = 4  # ... if it lines up (px) with a clear cut in another
    # a line this straight is an exact cut: crossings are left out, co-motion alone does not join it
    exact_straight: float = 0.9
    max_comotion: float = 0.3  # motion correlated across a boundary: one picture
    max_comotion_strong: float = 0.6
    # mean |horizontal grey step| of a feed: a still band below it is chrome. A bar with noise is near
    # 0.15; a still, low-detail picture (a far-away car park at the analysis size) is 0.6-0.8
    min_texture: float = 0.3
    max_structure: float = 0.25  # edge profiles correlated across a boundary: one picture
    max_structure_strong: float = 0.55  # ... for very strong seams
    max_joint_strong: float = 0.8  # ... if their structure and co-motion together stay under this
    no_structure: float = 0.15  # below this, co-motion alone does not join an exactly straight line
    strong_seam: float = 15.0
    min_feed: float = 0.15  # a feed spans at least this fraction of the box it was cut from
    chrome_change: float = 2.5  # chrome (caption band, bar) changes less than this between samples
    # ... for very strong seams, stricter: a strong natural edge (a panel's side, a wall-floor line) is
    # the usual false seam, a cut between feeds is exactly straight, and a divider's two edges are
    # taken as one line (_divider)
    min_straight_strong: float = 0.85
    min_straight_static: float = 0.8  # ... when nothing moves
    min_straight: float = 0.68  # fraction of the line on which the step sits exactly on the seam
    min_straight_apart: float = 0.6  # ... when nothing continues across the line
    min_straight_apart_strong: float = 0.75  # ... but no lower than this for very strong seams (a horizon, 0.66)
    chroma: bool = True  # also seek seams in the colour-difference planes (equal brightness, other colour)
    fill_copy: float = 0.8  # bands this like a magnified copy of the feed between them are its fill
    weak_seam_ratio: float = 2.0  # weaker seams (feeds of one setting side by side), while things move, ...
    weak_min_step: float = 4.0  # ... with at least this step ...
    weak_straight: float = 0.75  # ... if this straight, and nothing continues across them


DEFAULT_PARAMS = LayoutParams()


@dataclass
class LayoutResult:
    layout: str
    confidence: float
    regions: list[tuple[int, int, int, int]]  # x, y, w, h in displayed-frame pixels
    evidence: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    width: int = 0
    height: int = 0
    seconds: float = 0.0

    @property
    def multi_feed(self) -> bool:
        return self.layout in MULTI_FEED

    @property
    def n_feeds(self) -> int:
        return len(self.regions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "layout": self.layout,
            "confidence": round(float(self.confidence), 4),
            "regions": [list(map(int, r)) for r in self.regions],
            "n_feeds": self.n_feeds,
            "multi_feed": self.multi_feed,
            "width": self.width,
            "height": self.height,
            "evidence": self.evidence,
            "seconds": round(self.seconds, 4),
        }

    def detail(self) -> dict[str, Any]:
        """What VideoRecord.layout_detail stores: confidence, regions, evidence (+ n_feeds, multi_feed)."""
        return {
            "confidence": round(float(self.confidence), 4),
            "n_feeds": self.n_feeds,
            "multi_feed": self.multi_feed,
            "regions": [list(map(int, r)) for r in self.regions],
            "evidence": self.evidence,
        }


# ------------------------------------------------------------------ sampling


def analysis_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    s = long_side / max(width, height)
    return max(16, int(round(width * s / 2)) * 2), max(16, int(round(height * s / 2)) * 2)


def sample_runs(reader: VideoReader, params: LayoutParams = DEFAULT_PARAMS) -> list[np.ndarray]:
    """Short runs of consecutive frames, RGB uint8 at the analysis size: list of (run_len, h, w, 3).

    Short videos (up to ``short_video_s``) are read in one pass from the start, so every point gets
    its own run however sparse the keyframes are (a 4 s clip with one keyframe would otherwise give
    runs from its first second only: no evidence of what persists over time). Longer ones seek.
    """
    info = reader.info
    size = analysis_size(info.width, info.height, params.long_side)
    dur = max(info.duration, 1e-3)
    targets = [(i + 0.5) / params.n_runs * dur for i in range(params.n_runs)]
    errors: list[str] = []
    if dur <= params.short_video_s:
        runs = _runs_in_one_pass(reader, targets, size, params, errors)
    else:
        runs = _runs_by_seeking(reader, targets, size, params, errors)
    if not runs:
        why = f": {errors[0]}" if errors else ""
        raise CorruptMediaError(reader.path, f"no frame could be decoded for layout analysis{why}")
    if errors:
        reader.log.warnings.append(f"layout: decoding trouble at some points: {errors[0]}")
    return [np.stack(r + [r[-1]] * (params.run_len - len(r))) for r in runs]


def _runs_in_one_pass(reader: VideoReader, targets: list[float], size: tuple[int, int],
                      p: LayoutParams, errors: list[str]) -> list[list[np.ndarray]]:
    """Decode from the start; a run begins at the first frame at or after each target."""
    runs: list[list[np.ndarray]] = []
    i = 0  # next target
    try:
        for ft, frame in reader.decoded_from(0.0):
            if runs and len(runs[-1]) < p.run_len:
                runs[-1].append(reader.to_rgb(frame, size=size))
                continue
            if i >= len(targets):
                break
            if ft >= targets[i] - 1e-3:
                while i < len(targets) and ft >= targets[i] - 1e-3:
                    i += 1  # (frames sparser than the targets: one run for all the passed ones)
                runs.append([reader.to_rgb(frame, size=size)])
    except av.FFmpegError as e:
        errors.append(av_reason(e))
    return runs


def _runs_by_seeking(reader: VideoReader, targets: list[float], size: tuple[int, int],
                     p: LayoutParams, errors: list[str]) -> list[list[np.ndarray]]:
    """Seek to the keyframe before each target; take it (cheap), or decode forward to the target
    (at most ``max_lead`` frames) when an earlier target already took that keyframe."""
    runs: list[list[np.ndarray]] = []
    seen: set[float] = set()
    for t in targets:
        got: list[tuple[float, np.ndarray]] = []
        n = 0
        try:
            for ft, frame in reader.decoded_from(t):
                n += 1
                if not got and ft < t - 1e-3 and n <= p.max_lead and round(ft, 3) in seen:
                    continue
                got.append((ft, reader.to_rgb(frame, size=size)))
                if len(got) >= p.run_len:
                    break
        except av.FFmpegError as e:
            errors.append(av_reason(e))
        if not got:
            continue
        key = round(got[0][0], 3)
        if key in seen:
            continue
        seen.add(key)
        runs.append([g for _, g in got])
    return runs


# ------------------------------------------------------------------ analysis


def _gray(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


class _Frames:
    """The sampled frames as float arrays: all frames, first of each run, motion per run."""

    def __init__(self, runs: list[np.ndarray]):
        rgb = np.concatenate(runs).astype(np.float32)  # (T, h, w, 3)
        self.rgb = rgb
        self.g = _gray(rgb)  # (T, h, w)
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


def _trim_bars(F: _Frames, p: LayoutParams) -> tuple[int, int, int, int]:
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
        if a and np.median(peak[:a]) >= p.bar_flat:
            a = 0
        if b < n and np.median(peak[b:]) >= p.bar_flat:
            b = n
        return a, b

    y0, y1 = span(row_bar, row_peak)
    x0, x1 = span(col_bar, col_peak)
    return x0, y0, x1, y1


def _seam_scores(g: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per boundary, over frames: step across it (median along the line) and its ratio to neighbours.

    g: (T, h, w). axis=1: boundaries between rows (horizontal seams); axis=2: between columns.
    Returns (step, ratio), each (T, n) for boundary index 1..n-1 at position i (between i-1 and i+1).
    """
    if axis == 2:
        g = g.transpose(0, 2, 1)
    # central difference over 2 px: seams blended over one row by scaling still show
    d = np.abs(g[:, 2:, :] - g[:, :-2, :])  # (T, n-2, L): boundary at row i+1
    step = np.median(d, axis=2)  # (T, n-2)
    T, m = step.shape
    # neighbourhood baseline: median step of rows 3..10 away on both sides
    pad = np.pad(step, ((0, 0), (10, 10)), mode="edge")
    neigh = np.stack([pad[:, 10 + k: 10 + k + m] for k in (-10, -8, -6, -4, 4, 6, 8, 10)], axis=0)
    base = np.median(neigh, axis=0)
    ratio = step / (base + 2.0)
    return step, ratio


def _corr_rows(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching rows of u and v (last axis)."""
    u = u - u.mean(axis=-1, keepdims=True)
    v = v - v.mean(axis=-1, keepdims=True)
    return (u * v).sum(-1) / (np.sqrt((u * u).sum(-1) * (v * v).sum(-1)) + 1e-6)


def _continuity(g: np.ndarray, m: np.ndarray, pos: int, k: int = 3,
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
    structure = float(np.median(_corr_rows(ga, gb)))
    ma = m[:, max(0, pos - 6): max(1, pos - 2), :].mean(axis=1)
    mb = m[:, min(n - 1, pos + 2): min(n, pos + 6), :].mean(axis=1)
    if ma.shape != mb.shape or ma.size == 0:
        return structure, 0.0
    active = (ma.max(axis=-1) > 2.0) & (mb.max(axis=-1) > 2.0)
    comotion = float(np.mean(_corr_rows(ma, mb)[active])) if active.any() else 0.0
    return structure, comotion


def _divider(g: np.ndarray, pos: int, flat_std: float, widest: int = 4) -> tuple[int, int] | None:
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


def _straightness(g: np.ndarray, pos: int, flat_std: float) -> float:
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
    win = np.median(d[:, lo:hi, :], axis=0)
    am = np.argmax(win, axis=0) + lo + 1
    narrow = float(np.mean(np.abs(am - pos) <= 1))
    stripe = _divider(g, pos, flat_std)
    if stripe is not None:
        # the stripe's two edges are one line: the step on either side of it (and the blended lines
        # just outside) counts; one feed matching the divider's colour leaves only the other edge
        a, b = stripe
        narrow = max(narrow, float(np.mean((am >= a - 1) & (am <= b + 1))))
    d = np.abs(g[:, 4:, :] - g[:, :-4, :])  # boundary at row i+2
    lo, hi = max(0, pos - 6), min(d.shape[1], pos + 3)
    if hi <= lo:
        return narrow
    am = np.argmax(np.median(d[:, lo:hi, :], axis=0), axis=0) + lo + 2
    wide = max(float(np.mean(np.abs(am - c) <= 1)) for c in range(pos - 2, pos + 3))
    return max(narrow, wide)


def _find_seams(F: _Frames, box: tuple[int, int, int, int], axis: int, p: LayoutParams,
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


def _find_seams_in(F: _Frames, plane: str, box: tuple[int, int, int, int], axis: int, p: LayoutParams,
                   moving: bool, need: float | None, crossing: tuple[int, ...]) -> list[tuple[int, float, dict]]:
    """Seams of one plane of the picture (see :func:`_find_seams`)."""
    x0, y0, x1, y1 = box
    along = tuple(c - (x0 if axis == 1 else y0) for c in crossing)
    g = F.planes[plane][:, y0:y1, x0:x1]
    m = F.motion[:, y0:y1, x0:x1]
    if axis == 2:
        g, m = g.transpose(0, 2, 1), m.transpose(0, 2, 1)
    n = g.shape[1]
    if n < 24 or g.shape[2] < 8:
        return []
    step, ratio = _seam_scores(g, 1)
    q = p.seam_quantile
    r = np.quantile(ratio, q, axis=0)
    s = np.quantile(step, q, axis=0)
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
    cands: list[tuple[int, float]] = []
    for i in np.flatnonzero(ok):
        pos = int(i) + 1  # boundary between rows pos-1 and pos+1 → seam at pos (pixel row)
        if pos < margin or pos > n - margin:
            continue
        cands.append((pos, float(r[i])))
    # non-maximum suppression: one seam per 4 px
    cands.sort(key=lambda c: -c[1])
    kept: list[tuple[int, float, dict]] = []
    for pos, sc in cands:
        if any(abs(pos - k) <= 4 for k, _, _ in kept):
            continue
        straight = _straightness(g, pos, p.bar_std)
        # only an exactly straight line is taken for a divider whose crossings may be left out
        structure, comotion = _continuity(g, m, pos, exclude=along if straight >= p.exact_straight else ())
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
            kept.append((pos, sc, info))
            continue
        # a natural edge: the picture continues across it
        # Motion alone does not make an exactly straight line with no structure across it continuous:
        # two unrelated feeds each with their subject in the middle move at the same places.
        motion_only = straight >= p.exact_straight and structure < p.no_structure
        moves_along = comotion >= (p.max_comotion_strong if strong else p.max_comotion) and not motion_only
        # a strong seam may have some structure or some co-motion across it, not much of both
        joint = strong and not motion_only and structure + comotion >= p.max_joint_strong
        if moves_along or joint or structure >= (p.max_structure_strong if strong else p.max_structure):
            info["rejected"] = "continuous"
            kept.append((pos, sc, info))
            continue
        kept.append((pos, sc, info))
    off = y0 if axis == 1 else x0
    return sorted((pos + off, sc, info) for pos, sc, info in kept)


def _region_stats(F: _Frames, box: tuple[int, int, int, int]) -> dict[str, float]:
    x0, y0, x1, y1 = box
    g = F.g[:, y0:y1, x0:x1]
    med = np.median(g, axis=(1, 2), keepdims=True)
    flat = float(np.mean(np.abs(g - med) < 3.0))
    motion = float(F.motion[:, y0:y1, x0:x1].mean())
    keys = F.keys[:, y0:y1, x0:x1]
    change = float(np.abs(np.diff(keys, axis=0)).mean()) if len(keys) > 1 else 0.0
    texture = float(np.abs(np.diff(g, axis=2)).mean()) if g.shape[2] > 1 else 0.0
    return {"flat": flat, "motion": motion, "change": change, "texture": texture}


def _is_chrome(st: dict[str, float], rel: float, p: LayoutParams) -> bool:
    """Not a feed: a bar (one colour) or a static, mostly flat band (caption, title)."""
    static = st["motion"] < p.static_motion and st["change"] < p.chrome_change
    blank = st["texture"] < p.min_texture  # no detail at all: a bar with noise, a blurred band
    return st["flat"] >= 0.95 or (static and (blank or st["flat"] >= p.chrome_flat))


def _pieces(F: _Frames, box, direction: str, seams: list, p: LayoutParams):
    """Cut box at seams; drop cuts that leave a thin non-chrome piece. Returns (pieces, seams)."""
    x0, y0, x1, y1 = box
    lo, hi = (y0, y1) if direction == "rows" else (x0, x1)
    extent = hi - lo
    seams = list(seams)
    while True:
        cuts = [lo] + [q for q, _, _ in seams] + [hi]
        pieces = []
        for a, b in zip(cuts[:-1], cuts[1:]):
            sub = (x0, a, x1, b) if direction == "rows" else (a, y0, b, y1)
            st = _region_stats(F, sub) if b - a >= 2 else {"flat": 1.0, "motion": 0.0, "change": 0.0,
                                                          "texture": 0.0}
            pieces.append([sub, _is_chrome(st, (b - a) / extent, p) or b - a < 2, st, (b - a) / extent])
        thin = [i for i, pc in enumerate(pieces) if not pc[1] and pc[3] < p.min_feed]
        if not thin or not seams:
            return pieces, seams
        i = thin[0]
        # remove the weaker seam next to the thin piece (piece i lies between seams i-1 and i)
        nb = [j for j in (i - 1, i) if 0 <= j < len(seams)]
        j = min(nb, key=lambda j: seams[j][1])
        seams.pop(j)


def _box_blur(a: np.ndarray, k: int) -> np.ndarray:
    """Mean over k x k windows of the last two axes (edges repeated), from summed-area tables."""
    r = k // 2
    lead = [(0, 0)] * (a.ndim - 2)
    c = np.pad(a, lead + [(r, r), (r, r)], mode="edge").cumsum(axis=-2).cumsum(axis=-1)
    c = np.pad(c, lead + [(1, 0), (1, 0)])  # a zero row and column in front: sums of empty windows
    h, w = a.shape[-2:]
    return (c[..., k:k + h, k:k + w] - c[..., :h, k:k + w] - c[..., k:k + h, :w] + c[..., :h, :w]) / (k * k)


def _fill_of(F: _Frames, box, direction: str, q: int) -> tuple[tuple[int, int, int, int], float] | None:
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
            pred = _box_blur(keys[:, ys, xs], 9).reshape(len(keys), -1)
            band = _box_blur(keys[:, a:b, x0:x1], 9).reshape(len(keys), -1)
            alike.append(float(np.median(_corr_rows(pred, band))))
        feed = (x0, fa, x1, fb) if direction == "rows" else (fa, x0, fb, x1)
        if best is None or min(alike) > best[1]:
            best = (feed, min(alike))
    return best


def _split(F: _Frames, box, p: LayoutParams, moving: bool, depth: int, log: list,
           need: float | None = None) -> tuple:
    """Recursive XY-cut. A tree: ('leaf', box) or (direction, [children]), direction 'rows'|'cols'."""
    if depth > p.max_depth:
        return ("leaf", box)
    def look(crossing: dict[str, tuple[int, ...]]) -> tuple[dict, dict]:
        found = {d: _find_seams(F, box, 1 if d == "rows" else 2, p, moving, need, crossing=crossing.get(d, ()))
                 for d in ("rows", "cols")}
        return found, {d: [c for c in v if "rejected" not in c[2]] for d, v in found.items()}

    found, good = look({})
    if not good["rows"] and not good["cols"] and moving:
        # A grid's two dividers cross: where they meet, each puts one huge step on both sides of the
        # other, and that alone makes the pictures look continuous. Where one of them is exactly
        # straight and strong, and the other straight enough for a seam, judge each again without the
        # other's neighbourhood (only an exactly straight line is judged without its crossings).
        exact = {d: tuple(q for q, sc, info in v if info.get("rejected") == "continuous"
                          and info["straight"] >= p.exact_straight and sc >= p.grid_cross_seam)
                 for d, v in found.items()}
        lines = {d: tuple(q for q, sc, info in v if info.get("rejected") == "continuous"
                          and info["straight"] >= p.min_straight and sc >= p.seam_ratio)
                 for d, v in found.items()}
        if (exact["rows"] and lines["cols"]) or (exact["cols"] and lines["rows"]):
            found, good = look({"rows": lines["cols"], "cols": lines["rows"]})
    entry = {"box": list(box), "depth": depth,
             "candidates": {d: [[q, round(sc, 2), info] for q, sc, info in v] for d, v in found.items() if v}}
    # The direction with the strongest seam first; if its cuts all leave thin pieces (a strong line
    # near an edge), the other direction's seams still get their turn.
    order = sorted((d for d in good if good[d]), key=lambda d: -max(c[1] for c in good[d]))
    if not order:
        if entry["candidates"]:
            log.append(entry)
        return ("leaf", box)
    # A feed over an enlarged copy of itself is one feed: the bands are its fill, like bars.
    for direction in order:
        for q, _, _ in good[direction]:
            fill = _fill_of(F, box, direction, q)
            if fill is not None and fill[1] >= p.fill_copy:
                entry.update(dir=direction, fill={"feed": list(fill[0]), "alike": round(fill[1], 2)})
                log.append(entry)
                return _split(F, fill[0], p, moving, depth, log, need)
    for direction in order:
        pieces, seams = _pieces(F, box, direction, good[direction], p)
        if seams:
            break
    content = [pc[0] for pc in pieces if not pc[1]]
    entry.update(dir=direction, seams=[[q, round(sc, 2)] for q, sc, _ in seams],
                 pieces=[{"box": list(pc[0]), "chrome": bool(pc[1]),
                          **{k: round(v, 2) for k, v in pc[2].items()}} for pc in pieces])
    log.append(entry)
    if not content:
        return ("leaf", box)
    if len(content) == 1:
        if content[0] == box:
            return ("leaf", box)
        # Only chrome was cut away (caption band, bar): the rest is analysed as the box, same level.
        return _split(F, content[0], p, moving, depth, log, need)
    if depth >= p.max_depth:
        return (direction, [("leaf", c) for c in content])
    # Feeds found. A grid: every feed is cut across at the same place (within a few px).
    cross = "cols" if direction == "rows" else "rows"
    axis = 1 if cross == "rows" else 2
    per = []
    for c in content:
        # (cand: position, score, accepted as a seam, found in grey)
        per.append([(q, sc, "rejected" not in info, "plane" not in info)
                    for q, sc, info in _find_seams(F, c, axis, p, moving, need=p.grid_seam_low,
                                                   crossing=tuple(q for q, _, _ in seams))])
    accepted: list[int] = []
    for q, sc, clean, grey in sorted((c for cands in per for c in cands), key=lambda c: -c[1]):
        if not clean or any(abs(q - a) <= 4 for a in accepted):
            continue
        aligned = [[c for c in cands if abs(q - c[0]) <= p.grid_align] for cands in per]
        # A clear grey cut in one feed with any candidate lined up in every other (continuity is only
        # asked of the clearest one). A colour seam is no such anchor: a coloured object's edge in one
        # feed lined up with a weak step in another made a stack look like a grid. Cuts accepted in
        # every feed, however weak, agree on their own.
        anchored = grey and sc >= p.seam_ratio and all(aligned)
        agreed = all(any(c[2] for c in al) for al in aligned)
        if anchored or agreed:
            accepted.append(q)
    if not accepted:
        return (direction, [("leaf", c) for c in content])
    accepted.sort()
    children = []
    for c, cands in zip(content, per):
        cuts = sorted({min(cands, key=lambda qc: abs(qc[0] - a))[0] for a in accepted})
        x0c, y0c, x1c, y1c = c
        edges = ([y0c] if cross == "rows" else [x0c]) + cuts + ([y1c] if cross == "rows" else [x1c])
        kids = []
        for a, b in zip(edges[:-1], edges[1:]):
            sub = (x0c, a, x1c, b) if cross == "rows" else (a, y0c, b, y1c)
            if b - a >= 2 and not _is_chrome(_region_stats(F, sub), 1.0, p):
                kids.append(("leaf", sub))
        children.append((cross, kids) if len(kids) > 1 else (kids[0] if kids else ("leaf", c)))
    log.append({"box": list(box), "grid_cuts": accepted, "dir": cross})
    return (direction, children)


def _leaves(tree) -> list[tuple[int, int, int, int]]:
    if tree[0] == "leaf":
        return [tree[1]]
    out = []
    for c in tree[1]:
        out += _leaves(c)
    return out


def _find_pip(F: _Frames, box, p: LayoutParams) -> tuple[tuple[int, int, int, int], float, float] | None:
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
        return (e >= p.pip_edge) & (e >= p.seam_ratio * (np.median(neigh, axis=0) + 2.0))

    # edges in any plane: an inset's side that matches the picture under it in brightness may not in colour
    planes = [F.planes[pl][:, y0:y1, x0:x1] for pl in (("grey", "cb", "cr") if p.chroma else ("grey",))]
    bh = np.zeros((H, W), bool)
    bv = np.zeros((H, W), bool)
    for c in planes:
        eh = np.quantile(np.abs(c[:, 2:, :] - c[:, :-2, :]), q, axis=0)  # (H-2, W): edge at row i+1
        ev = np.quantile(np.abs(c[:, :, 2:] - c[:, :, :-2]), q, axis=0)  # (H, W-2)
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
    # every rectangle at once, indexed [top, bottom, left, right]
    top, bot = hs[:, None, :, :], hs[None, :, :, :]
    lef = vs.transpose(1, 2, 0)[:, :, :, None]
    rig = vs.transpose(1, 2, 0)[:, :, None, :]
    YA, YB, XA, XB = np.meshgrid(ys, ys, xs, xs, indexing="ij", sparse=True)
    area = (YB - YA) * (XB - XA) / (H * W)
    near = (YA < p.pip_near * H, YB > (1 - p.pip_near) * H - 1, XA < p.pip_near * W, XB > (1 - p.pip_near) * W - 1)
    covers = (top, bot, lef, rig)
    inside = ((YB - YA >= min_h) & (XB - XA >= min_w) & (area >= p.pip_min_area) & (area <= p.pip_max_area)
              & (YA > 0) & (YB < H - 1) & (XA > 0) & (XB < W - 1))  # all four sides inside the box
    # An inset sits in a corner (a facecam, a reaction clip): a rectangle elsewhere is a thing in the
    # picture (a plaid shirt's stripes, a screen or a picture on the wall).
    corner = (((YA < p.pip_corner * H) | (YB > (1 - p.pip_corner) * H - 1))
              & ((XA < p.pip_corner * W) | (XB > (1 - p.pip_corner) * W - 1)))
    inside = inside & corner
    ok = inside
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
    ok_faint = inside & (faint == 1)
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
            per = [_segment_seam(pg, m, axis, pos, a, b) for pg in planes]
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
            memo[key] = (clear, max(r for r, _, _, _ in per), step, near_border)
        return memo[key]

    for cand, rank, faint_pass in ((ok, score, False), (ok_faint, score_faint, True)):
        idx = np.flatnonzero(cand)
        for k in idx[np.argsort(-rank.ravel()[idx], kind="stable")][:p.pip_tries]:
            i, j, u, v = np.unravel_index(k, cand.shape)
            ya, yb, xa, xb = int(ys[i]), int(ys[j]), int(xs[u]), int(xs[v])
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
                    return (xa + x0, ya + y0, xb + x0, yb + y0), float(rank.ravel()[k]), round(min(ratios), 2)
    return None


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


def _segment_seam(g: np.ndarray, m: np.ndarray, axis: int, pos: int, a: int, b: int):
    """Seam statistics of one side of a rectangle: (ratio, step, structure, comotion)."""
    if axis == 2:
        g, m = g.transpose(0, 2, 1), m.transpose(0, 2, 1)
    n = g.shape[1]
    lo, hi = max(0, pos - 12), min(n, pos + 13)
    sub, msub = g[:, lo:hi, a:b], m[:, lo:hi, a:b]
    if sub.shape[1] < 5 or sub.shape[2] < 4:
        return 0.0, 0.0, 1.0, 1.0
    step, ratio = _seam_scores(sub, 1)
    i = min(max(pos - lo - 1, 0), step.shape[1] - 1)
    q = 0.3
    r = float(np.quantile(ratio[:, max(0, i - 1): i + 2].max(axis=1), q))
    st = float(np.quantile(step[:, max(0, i - 1): i + 2].max(axis=1), q))
    # at two distances: a side on the edge of a thin stripe in one picture (a frame, a shelf's edge)
    # reads the stripe itself 3 px away, and the picture continuing across it only further off
    both = [_continuity(sub, msub, pos - lo, k=k) for k in (3, 5)]
    return r, st, max(c for c, _ in both), max(m_ for _, m_ in both)


def _independence(F: _Frames, boxes: list[tuple[int, int, int, int]]) -> dict[str, Any]:
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


def _box_to_px(box, sx: float, sy: float, W: int, H: int) -> tuple[int, int, int, int]:
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
    F = _Frames(runs)
    sx, sy = width / F.w, height / F.h
    active = _trim_bars(F, p)
    gmot = float(F.motion.mean())
    gchg = float(np.abs(np.diff(F.keys, axis=0)).mean()) if F.n_runs > 1 else 0.0
    moving = gmot >= p.static_motion or gchg >= 3.0
    log: list = []
    tree = _split(F, active, p, moving, 0, log)
    leaves = _leaves(tree)
    evidence: dict[str, Any] = {
        "active_box": list(_box_to_px(active, sx, sy, width, height)),
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
        pip = _find_pip(F, leaves[0], p)
        if pip is not None:
            (xa, ya, xb, yb), score, weakest = pip
            inner = (xa, ya, xb, yb)
            st = _region_stats(F, inner)
            alive = st["motion"] >= 0.5 or st["change"] >= 1.0
            if not _is_chrome(st, 1.0, p) and st["texture"] > 2.0 and alive:
                layout = "picture-in-picture"
                regions = [leaves[0], inner]
                strength = weakest
                evidence["pip"] = {"box": list(_box_to_px(inner, sx, sy, width, height)),
                                   "score": round(score, 3), **{k: round(v, 2) for k, v in st.items()}}
        if layout == "single_scene" and log:
            evidence["seams"] = log
    if layout != "single_scene":
        ind = _independence(F, regions)
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
    px_regions = [_box_to_px(b, sx, sy, width, height) for b in regions]
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
