"""The randomized layout set: every parameter of a composition drawn from a wide range.

A detector tuned on a fixed recipe learns the recipe. The first one put every
inset 4 % from a corner, made every clip 4 s long and put seams where the
recipe did, and the detector turned that into rules (an inset 15 % up from an
edge was invisible). Here nothing is fixed. Each video is drawn from a seed:
its **family** (how it is composed), its canvas (9:16, 16:9, 1:1, 4:5 at
480p-1080p), duration (3-60 s), frame rate (24-60), where every feed sits and
how large, bars of any width and colour between feeds or none, insets
anywhere (near a corner, centred along an edge, off-centre, in the middle)
with or without a border, rounded corners or a drop shadow, captions,
stickers, emoji, watermarks, progress bars and subtitles over single feeds and
composites alike, slow zooms and pans, and the artefacts of re-uploads (a
rescale down and up, low-bitrate encoding).

Families (the unit of held-out evaluation: a detector is trained or tuned
without a family and judged on it):

- several feeds: ``stack`` (2-4 feeds top to bottom), ``side`` (2-3 side by
  side), ``grid`` (2x2 to 3x3, uneven cells), ``inset`` (one feed over
  another), ``framed`` (a stack or side-by-side pair inside bars, under a
  title band or on a square canvas), ``screen_cam`` (a screen recording with
  a camera inset);
- one feed (hard negatives): ``plain`` (cropped to fill), ``letterbox``,
  ``blur_fill`` (over a blurred copy of itself), ``caption_canvas`` (under a
  caption band on a plain canvas), ``overlaid`` (stickers, emoji, watermarks,
  progress bars, subtitles), ``zoom_pan``, ``screen`` (screen recordings and
  slides).

Feeds come from the real clips and images of ``../shared/media`` (split by
file into a ``dev`` and a ``heldout`` pool, :func:`ops.synthetic.media.clip_pool`,
so a set can be built from clips a detector never saw) and from ffmpeg's own
sources (game-like scrollers, fractals, automata, test patterns) plus
synthetic screen recordings and slides drawn here. The recipe is this file;
no media is committed. Each video's manifest entry holds its full
specification and its ground truth: the label and every feed's rectangle.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ops.synthetic.composite import GENERATED_KINDS, _even, _monotonic_setpts, generated_source
from ops.synthetic.media import clip_pool, find_clips, font_file, source_of

MULTI_FAMILIES = ("stack", "side", "grid", "inset", "framed", "screen_cam")
SINGLE_FAMILIES = ("plain", "letterbox", "blur_fill", "caption_canvas", "overlaid", "zoom_pan", "screen")
FAMILIES = MULTI_FAMILIES + SINGLE_FAMILIES
#: Share of each family in a set (several feeds and one feed come out about even).
WEIGHTS = {"stack": 3, "side": 2, "grid": 2, "inset": 3, "framed": 2, "screen_cam": 1,
           "plain": 2, "letterbox": 2, "blur_fill": 2, "caption_canvas": 2, "overlaid": 2, "zoom_pan": 1,
           "screen": 1}
ASPECTS = [((9, 16), 4), ((16, 9), 2.5), ((1, 1), 1.5), ((4, 5), 2)]
SHORT_SIDES = [480, 540, 720, 720, 1080]
FRAME_RATES = [24, 25, 30, 30, 50, 60]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
#: Generated kinds used as feeds (``solid`` is no picture; ``smptehdbars`` is a test card).
GEN_KINDS = [k for k in GENERATED_KINDS if k not in ("solid",)]
WORDS = ("wait for it", "no way", "this is crazy", "part 2", "follow for more", "you won't believe this",
         "watch till the end", "FACTS", "top 5 moments", "day 14 of trying", "he did WHAT", "LOL",
         "best moments", "storytime", "POV you", "rate this 1-10", "new record", "like and share")
EMOJI = "★☺♥☀✔✈☂♫☕✿⚡☯✌"


# ------------------------------------------------------------------------------------ sources

@dataclass(frozen=True)
class Source:
    """Where a feed's pictures come from: a real clip or image, a generated kind, a screen or a slide."""

    kind: str  # clip | image | gen | screen | slide
    ref: str  # path, or generated kind
    group: str  # for held-out splits: the source a real file came from; "generated" otherwise
    duration: float = 0.0
    width: int = 0
    height: int = 0
    person: bool = False  # a person facing the camera (a talking-head or camera feed)


#: Real clips of one person facing the camera (sign-language clips): the camera feed of screen_cam.
PERSON_SOURCES = ("intel-iot-devkit-sample-videos",)


def source_pool(media_dir: str | Path | None, pool: str) -> list[Source]:
    """Real clips and images of one pool (``dev`` or ``heldout``) plus the generated kinds."""
    out: list[Source] = []
    if media_dir is not None and Path(media_dir).is_dir():
        for c in find_clips(media_dir, pool):
            grp = source_of(c.path)
            out.append(Source("clip", c.path, grp, c.duration, c.width, c.height,
                              person=grp in PERSON_SOURCES and Path(c.path).suffix == ".mkv"))
        images = Path(media_dir) / "images"
        if images.is_dir():
            from PIL import Image

            for p in sorted(images.iterdir()):
                if p.suffix.lower() in IMAGE_SUFFIXES and clip_pool(p.name) == pool:
                    with Image.open(p) as im:
                        out.append(Source("image", str(p), source_of(str(p)), 0.0, im.width, im.height))
    out += [Source("gen", k, "generated") for k in GEN_KINDS]
    out += [Source("screen", "screen", "generated"), Source("slide", "slide", "generated")]
    return out


# ------------------------------------------------------------------------------------ the spec

@dataclass
class Placement:
    """One feed on the canvas: its source and its rectangle (the picture, borders excluded)."""

    source: Source
    rect: tuple[int, int, int, int]  # x, y, w, h on the canvas
    offset: float = 0.0  # seconds into a clip
    seed: int = 0  # for generated sources
    fit: str = "cover"  # cover: scaled and cropped to the rectangle; blur: the blur-fill background
    border: int = 0
    border_color: str = "white"
    radius: int = 0  # rounded corners (px)
    shadow: int = 0  # drop-shadow offset (px)
    motion: str = "none"  # none | zoom | pan


@dataclass
class Spec:
    name: str
    family: str
    label: str  # one of indexer.layout.LAYOUTS
    canvas: tuple[int, int]
    fps: int
    duration: float
    crf: int
    background: str
    placements: list[Placement]
    overlays: list[dict] = field(default_factory=list)
    rescale: float | None = None  # re-upload: scaled down by this factor and back up
    seed: int = 0
    pool: str = "dev"

    @property
    def regions(self) -> list[list[int]]:
        """The ground truth: every feed's rectangle (a blur fill's background is not a feed)."""
        return [list(p.rect) for p in self.placements if p.fit != "blur"]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["regions"] = self.regions
        d["sources"] = sorted({p.source.group for p in self.placements})
        return d


def _color(rng: random.Random, plain_bias: float = 0.6) -> str:
    if rng.random() < plain_bias:
        return rng.choice(["black", "black", "white", "0x101010", "0xf0f0f0"])
    return "0x" + "".join(f"{rng.randrange(256):02x}" for _ in range(3))


def _canvas(rng: random.Random, aspect: tuple[int, int] | None = None) -> tuple[int, int]:
    a = aspect or rng.choices([a for a, _ in ASPECTS], weights=[w for _, w in ASPECTS])[0]
    short = rng.choice(SHORT_SIDES)
    if a[0] <= a[1]:
        return _even(short), _even(short * a[1] / a[0])
    return _even(short * a[0] / a[1]), _even(short)


def _duration(rng: random.Random) -> float:
    u = rng.random()
    if u < 0.6:
        return round(rng.uniform(3, 8), 2)
    if u < 0.92:
        return round(rng.uniform(8, 20), 2)
    return round(rng.uniform(20, 60), 2)


def _shares(rng: random.Random, n: int, lo: float) -> list[float]:
    """n positive shares summing to 1, none under ``lo`` (uneven splits: 25-75 % for two)."""
    while True:
        raw = [rng.uniform(0.5, 1.5) ** 2 for _ in range(n)]
        s = sum(raw)
        shares = [r / s for r in raw]
        if min(shares) >= lo:
            return shares


def _pick(rng: random.Random, pool: list[Source], *, used: set[str], kinds: tuple[str, ...] = ("clip", "gen", "image"),
          weights: dict[str, float] | None = None, person: bool | None = None) -> Source:
    w = weights or {"clip": 6.0, "gen": 2.0, "image": 1.0, "screen": 0.7, "slide": 0.3}
    cands = [s for s in pool if s.kind in kinds and s.ref not in used
             and (person is None or s.person == person)] or [s for s in pool if s.kind in kinds]
    # without media (no real clips, no one facing a camera) any picture source stands in
    cands = cands or [s for s in pool if s.kind in ("clip", "gen", "image")]
    return rng.choices(cands, weights=[w.get(s.kind, 1.0) for s in cands])[0]


def _place(rng: random.Random, pool: list[Source], used: set[str], rect, duration: float, **kw) -> Placement:
    src = kw.pop("source", None) or _pick(rng, pool, used=used, kinds=kw.pop("kinds", ("clip", "gen", "image")),
                                          person=kw.pop("person", None))
    used.add(src.ref)
    room = max(0.0, src.duration - min(duration, src.duration) - 0.1) if src.kind == "clip" else 0.0
    motion = kw.pop("motion", "none")
    if src.kind == "image" and motion == "none" and rng.random() < 0.6:
        motion = rng.choice(["zoom", "pan"])  # a still picture is usually panned or zoomed in uploads
    return Placement(src, tuple(int(v) for v in rect), round(rng.uniform(0, room), 2) if room else 0.0,
                     rng.randrange(1 << 30), motion=motion, **kw)


def _bars(rng: random.Random) -> int:
    return 0 if rng.random() < 0.45 else rng.choice([2, 4, 6, 8, 12, 16, 24, 32, 40])


def _tile(total: int, shares: list[float], gap: int, start: int = 0) -> list[tuple[int, int]]:
    """(offset, length) of cells along one axis: ``shares`` of ``total`` after the gaps, even numbers."""
    room = total - gap * (len(shares) - 1)
    out, pos = [], start
    for i, s in enumerate(shares):
        length = _even(room * s) if i < len(shares) - 1 else start + total - pos
        out.append((pos, length))
        pos += length + gap
    return out


def _overlays(rng: random.Random, W: int, H: int, duration: float, many: bool = False) -> list[dict]:
    """Things drawn over the picture in short video: captions, stickers, emoji, watermarks, progress
    bars and subtitles (none, or up to four of them)."""
    kinds = ["caption", "sticker", "emoji", "watermark", "progress", "subtitles"]
    n = rng.choice([1, 2, 3, 4]) if many else (0 if rng.random() < 0.6 else rng.choice([1, 1, 2]))
    out = []
    s = min(W, H)
    for kind in rng.sample(kinds, n):
        if kind == "caption":
            out.append({"kind": kind, "text": rng.choice(WORDS), "size": _even(s * rng.uniform(0.04, 0.08)),
                        "y": rng.uniform(0.05, 0.85), "box": rng.random() < 0.5, "color": rng.choice(["white", "yellow", "black"])})
        elif kind == "sticker":
            out.append({"kind": kind, "text": rng.choice(["LIKE", "NEW!", "WOW", "SUB", "LIVE", "HOT"]),
                        "size": _even(s * rng.uniform(0.04, 0.08)), "x": rng.uniform(0.05, 0.75),
                        "y": rng.uniform(0.05, 0.85), "color": _color(rng, 0.0)})
        elif kind == "emoji":
            out.append({"kind": kind, "text": "".join(rng.sample(EMOJI, rng.randint(1, 3))),
                        "size": _even(s * rng.uniform(0.05, 0.12)), "x": rng.uniform(0.05, 0.8),
                        "y": rng.uniform(0.05, 0.85)})
        elif kind == "watermark":
            out.append({"kind": kind, "text": "@" + rng.choice(["clipsdaily", "viralhub", "funny.zone", "tok"]),
                        "size": _even(s * rng.uniform(0.03, 0.05)), "alpha": rng.uniform(0.3, 0.7),
                        "moves": rng.random() < 0.5})
        elif kind == "progress":
            out.append({"kind": kind, "height": max(2, _even(s * rng.uniform(0.006, 0.015))),
                        "y": rng.choice(["top", "bottom"]), "color": _color(rng, 0.2)})
        else:
            out.append({"kind": kind, "lines": [rng.choice(WORDS) for _ in range(max(1, int(duration // 2)))][:30],
                        "size": _even(s * rng.uniform(0.035, 0.06)), "y": rng.uniform(0.7, 0.88)})
    return out


def draw_spec(seed: int, index: int, family: str, pool: list[Source], pool_name: str = "dev") -> Spec:
    """One video's specification, deterministic in (seed, index, family)."""
    rng = random.Random(f"layout-randomized:{seed}:{index}:{family}")
    W, H = _canvas(rng)
    dur = _duration(rng)
    used: set[str] = set()
    bg = _color(rng)
    pl: list[Placement] = []
    label = "single_scene"
    ov_many = False
    if family in ("stack", "side"):
        n = rng.choices([2, 3, 4], weights=[6, 3, 1])[0] if family == "stack" else rng.choices([2, 3], weights=[3, 1])[0]
        gap = _bars(rng)
        along = H if family == "stack" else W
        cells = _tile(along, _shares(rng, n, 0.25 if n == 2 else 0.16), gap)
        for off, length in cells:
            rect = (0, off, W, length) if family == "stack" else (off, 0, length, H)
            pl.append(_place(rng, pool, used, rect, dur))
        label = "vertical" if family == "stack" else "horizontal"
    elif family == "grid":
        cols, rows = rng.choices([(2, 2), (3, 2), (2, 3), (3, 3)], weights=[7, 1.5, 1.5, 1])[0]
        gap = _bars(rng)
        xs = _tile(W, _shares(rng, cols, 0.2 if cols == 2 else 0.15), gap)
        ys = _tile(H, _shares(rng, rows, 0.2 if rows == 2 else 0.15), gap)
        for y, h in ys:
            for x, w in xs:
                pl.append(_place(rng, pool, used, (x, y, w, h), dur))
        label = "grid"
    elif family in ("inset", "screen_cam"):
        if family == "screen_cam":
            base = _place(rng, pool, used, (0, 0, W, H), dur, kinds=("screen", "slide"))
        else:
            base = _place(rng, pool, used, (0, 0, W, H), dur)
        pl.append(base)
        short = min(W, H)
        side = short * rng.uniform(0.10, 0.45)
        aspect = rng.choice([16 / 9, 9 / 16, 1.0, 4 / 3, 3 / 4])
        iw, ih = (_even(side * aspect), _even(side)) if aspect >= 1 else (_even(side), _even(side / aspect))
        iw, ih = min(iw, _even(W * 0.6)), min(ih, _even(H * 0.6))
        border = 0 if rng.random() < 0.55 else rng.choice([2, 3, 4, 6, 8, 12])
        where = rng.choices(["corner", "edge", "off_centre", "centre"], weights=[3, 2, 3, 1])[0]
        m = int(short * rng.uniform(0.0, 0.08))
        lo_x, hi_x = border, W - iw - border
        lo_y, hi_y = border, H - ih - border
        if where == "corner":
            x = lo_x + m if rng.random() < 0.5 else hi_x - m
            y = lo_y + m if rng.random() < 0.5 else hi_y - m
        elif where == "edge":
            if rng.random() < 0.5:  # centred along the top or bottom edge
                x, y = (W - iw) // 2, lo_y + m if rng.random() < 0.5 else hi_y - m
            else:
                x, y = lo_x + m if rng.random() < 0.5 else hi_x - m, (H - ih) // 2
        elif where == "centre":
            x, y = (W - iw) // 2, (H - ih) // 2
        else:
            x, y = rng.randint(lo_x, max(lo_x, hi_x)), rng.randint(lo_y, max(lo_y, hi_y))
        x, y = _even(min(max(x, lo_x), hi_x), 0), _even(min(max(y, lo_y), hi_y), 0)
        cam = _place(rng, pool, used, (x, y, iw, ih), dur, person=True if family == "screen_cam" else None,
                     kinds=("clip",) if family == "screen_cam" else ("clip", "gen", "image"),
                     border=border, border_color=_color(rng, 0.7),
                     radius=0 if rng.random() < 0.75 else rng.choice([4, 8, 12, 20, 30]),
                     shadow=0 if rng.random() < 0.75 else rng.choice([3, 5, 8, 12]))
        pl.append(cam)
        label = "picture-in-picture"
    elif family == "framed":
        variant = rng.choice(["side_in_portrait", "stack_under_band", "stack_on_square", "stack_in_bars"])
        if variant == "side_in_portrait":
            W, H = _canvas(rng, rng.choice([(9, 16), (4, 5)]))
            n = 2
            fh = _even(W / 2 * rng.choice([16 / 9, 4 / 3, 1.0, 9 / 16]) ** -1 * 1.0)
            fh = min(fh, _even(H * 0.6))
            top = _even((H - fh) * rng.uniform(0.3, 0.7), 0)
            gap = _bars(rng)
            for off, length in _tile(W, _shares(rng, n, 0.3), gap):
                pl.append(_place(rng, pool, used, (off, top, length, fh), dur))
            label = "horizontal"
        else:
            if variant == "stack_on_square":
                W, H = _canvas(rng, (1, 1))
            band = _even(H * rng.uniform(0.08, 0.22)) if variant == "stack_under_band" else 0
            pad = _even(H * rng.uniform(0.04, 0.15)) if variant in ("stack_on_square", "stack_in_bars") else 0
            n = rng.choices([2, 3], weights=[4, 1])[0]
            gap = _bars(rng)
            inner_top = band + pad
            inner_h = H - inner_top - pad
            side_pad = _even(W * rng.uniform(0.0, 0.12), 0) if variant == "stack_on_square" else 0
            for off, length in _tile(inner_h, _shares(rng, n, 0.25), gap, start=inner_top):
                pl.append(_place(rng, pool, used, (side_pad, off, W - 2 * side_pad, length), dur))
            if band:
                ov_many = False
            label = "vertical"
            if band:
                bg = rng.choice(["white", "black", "0xffd700", "0x202020"])
        overlays = _overlays(rng, W, H, dur)
        if variant == "stack_under_band" or (variant != "side_in_portrait" and rng.random() < 0.5):
            overlays.append({"kind": "caption", "text": rng.choice(WORDS),
                             "size": _even(min(W, H) * rng.uniform(0.04, 0.07)), "y": 0.02,
                             "box": False, "color": "black" if bg in ("white", "0xffd700") else "white"})
        return _finish(rng, seed, index, family, label, (W, H), dur, bg, pl, overlays, pool_name)
    elif family == "plain":
        pl.append(_place(rng, pool, used, (0, 0, W, H), dur))
    elif family == "letterbox":
        src = _pick(rng, pool, used=used)
        a = (src.width / src.height) if src.width and src.height else rng.choice([16 / 9, 4 / 3, 1.0])
        if abs(a - W / H) < 0.15:
            a = 16 / 9 if W / H < 1 else 3 / 4
        fw, fh = (W, _even(W / a)) if a > W / H else (_even(H * a), H)
        x, y = (W - fw) // 2, _even((H - fh) * rng.choice([0.5, 0.5, 0.5, rng.uniform(0.3, 0.7)]), 0)
        pl.append(_place(rng, pool, used, (_even(x, 0), y, fw, fh), dur, source=src))
        bg = _color(rng, 0.8)
    elif family == "blur_fill":
        src = _pick(rng, pool, used=used, kinds=("clip", "image", "gen"))
        a = (src.width / src.height) if src.width and src.height else 16 / 9
        if abs(a - W / H) < 0.2:
            a = 16 / 9 if W / H < 1 else 9 / 16
        fw, fh = (W, _even(W / a)) if a > W / H else (_even(H * a), H)
        back = _place(rng, pool, used, (0, 0, W, H), dur, source=src, fit="blur")
        front = Placement(src, ((W - fw) // 2 // 2 * 2, (H - fh) // 2 // 2 * 2, fw, fh), back.offset, back.seed)
        pl += [back, front]
    elif family == "caption_canvas":
        bg = rng.choice(["white", "white", "black", "0xfff3c4", "0xe8e8ff"])
        band = _even(H * rng.uniform(0.12, 0.3))
        below = _even(H * rng.uniform(0.0, 0.2), 0)
        fh = H - band - below
        src = _pick(rng, pool, used=used)
        pl.append(_place(rng, pool, used, (0, band, W, fh), dur, source=src))
        ov = [{"kind": "caption", "text": rng.choice(WORDS), "size": _even(band * rng.uniform(0.2, 0.35)),
               "y": band * rng.uniform(0.15, 0.5) / H, "box": False,
               "color": "black" if bg != "black" else "white"}]
        return _finish(rng, seed, index, family, label, (W, H), dur, bg, pl, ov + _overlays(rng, W, H, dur),
                       pool_name)
    elif family == "overlaid":
        pl.append(_place(rng, pool, used, (0, 0, W, H), dur))
        ov_many = True
    elif family == "zoom_pan":
        pl.append(_place(rng, pool, used, (0, 0, W, H), dur, kinds=("clip", "image"),
                         motion=rng.choice(["zoom", "pan"])))
    elif family == "screen":
        pl.append(_place(rng, pool, used, (0, 0, W, H), dur, kinds=("screen", "slide")))
    else:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    return _finish(rng, seed, index, family, label, (W, H), dur, bg, pl, _overlays(rng, W, H, dur, many=ov_many),
                   pool_name)


def _finish(rng, seed, index, family, label, canvas, dur, bg, pl, overlays, pool_name) -> Spec:
    name = f"{index:05d}_{family}"
    return Spec(name, family, label, canvas, rng.choice(FRAME_RATES), dur,
                rng.choice([18, 23, 26, 28, 30, 32, 35, 38, 40]), bg, pl, overlays,
                rescale=rng.uniform(0.4, 0.8) if rng.random() < 0.35 else None, seed=seed, pool=pool_name)


# ------------------------------------------------------------------------------------ rendering

def _q(text: str) -> str:
    """Text for drawtext: no characters that end a filter option."""
    return text.replace("\\", "").replace(":", " ").replace("'", "").replace(",", " ").replace("%", " pct")


def _screen_chain(seed: int, w: int, h: int, fps: int, font: str | None, slide: bool) -> str:
    """A synthetic screen recording (a window of text lines scrolling, a moving pointer) or a slide."""
    r = random.Random(f"screen:{seed}")
    bg = r.choice(["0xfafafa", "0xffffff", "0x1e1e1e", "0xf3f3f3", "0x282c34"])
    fg = "0x202020" if bg in ("0xfafafa", "0xffffff", "0xf3f3f3") else "0xdcdcdc"
    size = max(10, int(min(w, h) * r.uniform(0.025, 0.05)))
    parts = [f"color=c={bg}:s={w}x{h}:r={fps}"]
    if slide:
        title = max(14, int(size * 1.8))
        if font:
            parts.append(f"drawtext=fontfile={font}:text='{_q(r.choice(WORDS).title())}':x=(w-text_w)/2:"
                         f"y={int(h * 0.12)}:fontsize={title}:fontcolor={fg}")
            for i in range(r.randint(2, 5)):
                parts.append(f"drawtext=fontfile={font}:text='• {_q(r.choice(WORDS))}':x={int(w * 0.1)}:"
                             f"y={int(h * 0.3) + i * int(size * 1.8)}:fontsize={size}:fontcolor={fg}")
        return ",".join(parts)
    bar = max(8, int(h * 0.05))
    parts.append(f"drawbox=x=0:y=0:w={w}:h={bar}:color=0x3c3c3c:t=fill")
    if font:
        lines = [" ".join(r.choice(WORDS) for _ in range(r.randint(1, 3))) for _ in range(40)]
        for i, line in enumerate(lines):
            parts.append(f"drawtext=fontfile={font}:text='{_q(line)}':x={int(w * 0.05)}:"
                         f"y={bar + 6 + i * int(size * 1.6)}-t*{r.uniform(8, 30):.1f}:fontsize={size}:fontcolor={fg}")
    else:
        for i in range(12):
            parts.append(f"drawbox=x={int(w * 0.05)}:y={bar + 6 + i * int(size * 1.6)}:w={int(w * r.uniform(0.3, 0.9))}"
                         f":h={size}:color={fg}:t=fill")
    return ",".join(parts)


def _feed_input(p: Placement, spec: Spec) -> list[str]:
    """ffmpeg input options for a file source (clips loop when shorter than the video)."""
    if p.source.kind == "clip":
        args = ["-stream_loop", "-1"] if p.offset + spec.duration > p.source.duration - 0.1 else []
        if p.offset:
            args += ["-ss", f"{p.offset:.2f}"]
        return args + ["-i", p.source.ref]
    if p.source.kind == "image":
        return ["-loop", "1", "-framerate", str(spec.fps), "-i", p.source.ref]
    return []


def _picture_chain(p: Placement, label: str, w: int, h: int, spec: Spec, font: str | None) -> tuple[str, str]:
    """(filter source spec or input label, chain) giving the feed at w x h."""
    fps = spec.fps
    if p.source.kind == "gen":
        return generated_source(p.source.ref, p.seed, size=(w, h), fps=fps) + ",setsar=1", ""
    if p.source.kind in ("screen", "slide"):
        return _screen_chain(p.seed, w, h, fps, font, slide=p.source.kind == "slide") + ",setsar=1", ""
    d = spec.duration
    # setpts first: some files restart their timestamps on every loop, and fps would then drop every
    # frame of the next loop and never reach the end (see _monotonic_setpts)
    base = f"[{label}]{_monotonic_setpts(fps)},fps={fps},setpts=N/({fps}*TB),setsar=1"
    if p.motion == "zoom":  # slow zoom in (zoompan: crop's size cannot change during a stream)
        z = random.Random(p.seed).uniform(0.1, 0.3)
        frames = max(1, int(d * fps))
        chain = (f"{base},scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},"
                 f"zoompan=z='1+{z:.3f}*on/{frames}':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':d=1:"
                 f"s={w}x{h}:fps={fps},setsar=1")
    elif p.motion == "pan":
        over = random.Random(p.seed).uniform(1.15, 1.5)
        W2, H2 = _even(w * over), _even(h * over)
        chain = (f"{base},scale={W2}:{H2}:force_original_aspect_ratio=increase,crop={W2}:{H2},"
                 f"crop={w}:{h}:x='(iw-{w})*t/{d:g}':y='(ih-{h})*t/{d:g}/2',setsar=1")
    else:
        chain = f"{base},scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},setsar=1"
    return "", chain


def _overlay_filters(ov: list[dict], W: int, H: int, d: float, font: str | None) -> tuple[list[str], list[str]]:
    """(drawtext-like filters on the composed picture, extra graph lines for moving strips)."""
    flt, extra = [], []
    for o in ov:
        k = o["kind"]
        if k == "progress":
            extra.append(o)
            continue
        if font is None:  # no font: a text-like block of the same size
            if k in ("caption", "sticker", "emoji", "watermark"):
                flt.append(f"drawbox=x={int(W * o.get('x', 0.3))}:y={int(H * o.get('y', 0.1))}:"
                           f"w={int(o['size'] * 0.6 * len(o.get('text', 'xxxx')))}:h={o['size']}:color=white@0.8:t=fill")
            continue
        if k == "caption":
            box = f":box=1:boxcolor=black@0.5:boxborderw={max(2, o['size'] // 4)}" if o.get("box") else ""
            flt.append(f"drawtext=fontfile={font}:text='{_q(o['text'])}':x=(w-text_w)/2:y={int(H * o['y'])}:"
                       f"fontsize={o['size']}:fontcolor={o['color']}{box}")
        elif k == "sticker":
            flt.append(f"drawtext=fontfile={font}:text='{_q(o['text'])}':x={int(W * o['x'])}:y={int(H * o['y'])}:"
                       f"fontsize={o['size']}:fontcolor=white:box=1:boxcolor={o['color']}:boxborderw={max(3, o['size'] // 3)}")
        elif k == "emoji":
            flt.append(f"drawtext=fontfile={font}:text='{o['text']}':x={int(W * o['x'])}:y={int(H * o['y'])}:"
                       f"fontsize={o['size']}:fontcolor=0xffcc00:borderw=2:bordercolor=black")
        elif k == "watermark":
            pos = ("x=if(lt(t\\,{h:g})\\,10\\,w-text_w-10):y=if(lt(t\\,{h:g})\\,10\\,h-text_h-10)".format(h=d / 2)
                   if o["moves"] else "x=w-text_w-10:y=h-text_h-10")
            flt.append(f"drawtext=fontfile={font}:text='{_q(o['text'])}':{pos}:fontsize={o['size']}:"
                       f"fontcolor=white@{o['alpha']:.2f}")
        elif k == "subtitles":
            n = len(o["lines"])
            step = d / n
            for i, line in enumerate(o["lines"]):
                flt.append(f"drawtext=fontfile={font}:text='{_q(line)}':x=(w-text_w)/2:y={int(H * o['y'])}:"
                           f"fontsize={o['size']}:fontcolor=white:borderw=2:bordercolor=black:"
                           f"enable='between(t\\,{i * step:.2f}\\,{(i + 1) * step:.2f})'")
    return flt, extra


def _round_mask(path: Path, w: int, h: int, radius: int) -> None:
    from PIL import Image, ImageDraw

    im = Image.new("L", (w, h), 0)
    ImageDraw.Draw(im).rounded_rectangle([0, 0, w - 1, h - 1], radius=radius, fill=255)
    im.save(path)


def render(spec: Spec, out: Path, *, timeout: float = 300.0) -> None:
    """Render ``spec`` into ``out`` (mp4, H.264) with one ffmpeg process; atomic (a failure leaves nothing)."""
    font = font_file()
    W, H = spec.canvas
    fps, d = spec.fps, spec.duration
    inputs: list[str] = []
    g: list[str] = [f"color=c={spec.background}:s={W}x{H}:r={fps}[c0]"]
    cur = "c0"
    tmpdir = Path(tempfile.mkdtemp(prefix=".mask-", dir=out.parent))
    try:
        n_in = 0
        for i, p in enumerate(spec.placements):
            x, y, w, h = p.rect
            label = ""
            if p.source.kind in ("clip", "image"):
                inputs += _feed_input(p, spec)
                label = f"{n_in}:v"
                n_in += 1
            src, chain = _picture_chain(p, label, w if p.fit != "blur" else W, h if p.fit != "blur" else H, spec, font)
            if src:
                g.append(f"{src}[f{i}]")
            else:
                g.append(f"{chain}[f{i}]")
            feed = f"f{i}"
            if p.fit == "blur":
                radius = max(4, int(min(W, H) * 0.03))
                g.append(f"[{feed}]boxblur={radius}:2[b{i}]")
                feed = f"b{i}"
            if p.radius:
                mask = tmpdir / f"m{i}.png"
                _round_mask(mask, w, h, min(p.radius, w // 2, h // 2))
                inputs += ["-loop", "1", "-framerate", str(fps), "-i", str(mask)]
                g.append(f"[{feed}]format=yuva420p[fa{i}];[{n_in}:v]format=gray,scale={w}:{h}[mk{i}];"
                         f"[fa{i}][mk{i}]alphamerge[r{i}]")
                n_in += 1
                feed = f"r{i}"
            if p.shadow:
                bw, bh = w + 2 * p.border, h + 2 * p.border
                g.append(f"color=c=black@0.55:s={bw}x{bh}:r={fps},format=yuva420p,"
                         f"boxblur=luma_radius=0:chroma_radius=0:alpha_radius={max(1, p.shadow // 2)}[s{i}]")
                g.append(f"[{cur}][s{i}]overlay={x - p.border + p.shadow}:{y - p.border + p.shadow}:shortest=1[cs{i}]")
                cur = f"cs{i}"
            if p.border:
                g.append(f"color=c={p.border_color}:s={w + 2 * p.border}x{h + 2 * p.border}:r={fps}[bd{i}]")
                g.append(f"[{cur}][bd{i}]overlay={x - p.border}:{y - p.border}:shortest=1[cb{i}]")
                cur = f"cb{i}"
            g.append(f"[{cur}][{feed}]overlay={x}:{y}:shortest=1:eof_action=repeat[c{i + 1}]")
            cur = f"c{i + 1}"
        flt, extra = _overlay_filters(spec.overlays, W, H, d, font)
        for j, o in enumerate(extra):
            y = 0 if o["y"] == "top" else H - o["height"]
            g.append(f"color=c={o['color']}:s={W}x{o['height']}:r={fps}[pb{j}]")
            g.append(f"[{cur}][pb{j}]overlay=x='-w+w*t/{d:g}':y={y}:shortest=1[cp{j}]")
            cur = f"cp{j}"
        post = list(flt)
        if spec.rescale:
            post.append(f"scale={_even(W * spec.rescale)}:{_even(H * spec.rescale)}:flags=bilinear,"
                        f"scale={W}:{H}:flags=bilinear")
        post.append("format=yuv420p")
        g.append(f"[{cur}]{','.join(post)}[vout]")
        tmp = out.with_name("." + out.name + ".part.mp4")
        args = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *inputs,
                "-filter_complex", ";".join(g), "-map", "[vout]", "-t", f"{d:g}", "-r", str(fps),
                "-c:v", "libx264", "-preset", "veryfast", "-crf", str(spec.crf), "-pix_fmt", "yuv420p",
                "-g", str(fps * 2), "-threads", "2", "-an", str(tmp)]
        res = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
        if res.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"{out.name}: ffmpeg failed: {res.stderr.strip()[-1200:]}")
        os.replace(tmp, out)
    finally:
        for f in tmpdir.iterdir():
            f.unlink()
        tmpdir.rmdir()


# ------------------------------------------------------------------------------------ sets

def plan_set(n: int, seed: int, pool: list[Source], pool_name: str = "dev",
             families: tuple[str, ...] = FAMILIES, max_duration: float | None = None) -> list[Spec]:
    """``n`` specifications, families drawn by :data:`WEIGHTS` (deterministic in seed).

    ``max_duration`` cuts each video short after everything else is drawn (the same compositions,
    rendered faster): for sets whose frames matter and whose length does not (image-text pairs).
    """
    rng = random.Random(f"layout-randomized-families:{seed}")
    fams = list(families)
    picks = rng.choices(fams, weights=[WEIGHTS[f] for f in fams], k=n)
    specs = [draw_spec(seed, i, f, pool, pool_name) for i, f in enumerate(picks)]
    if max_duration is not None:
        for s in specs:
            s.duration = min(s.duration, max_duration)
    return specs


def build_set(out_dir: str | Path, media_dir: str | Path | None, n: int = 300, seed: int = 0,
              pool: str = "dev", families: tuple[str, ...] = FAMILIES, log=print, workers: int = 1,
              max_duration: float | None = None) -> Path:
    """Render a randomized set into ``out_dir`` with ``labels.csv`` and ``manifest.json``.

    Videos already there are kept (a rerun renders what is missing). A video ffmpeg cannot
    render is reported and left out of the labels, and the rest go on. Returns labels.csv.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = source_pool(media_dir, pool)
    specs = plan_set(n, seed, sources, pool, families, max_duration)
    failed: dict[str, str] = {}

    def one(spec: Spec) -> tuple[str, str | None]:
        out = out_dir / f"{spec.name}.mp4"
        if out.exists():
            return spec.name, None
        try:
            render(spec, out)
        except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
            return spec.name, str(e)
        return spec.name, None

    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as ex:
            results = list(ex.map(one, specs))
    else:
        results = [one(s) for s in specs]
    for (name, err), spec in zip(results, specs):
        if err:
            failed[name] = err
            log(f"failed: {err}")
    kept = [s for s in specs if s.name not in failed]
    labels = out_dir / "labels.csv"
    with open(labels, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "layout", "family", "pool", "canvas", "duration", "fps", "crf", "sources"])
        for s in kept:
            w.writerow([f"{s.name}.mp4", s.label, s.family, s.pool, f"{s.canvas[0]}x{s.canvas[1]}", s.duration,
                        s.fps, s.crf, ";".join(sorted({p.source.group for p in s.placements}))])
    (out_dir / "manifest.json").write_text(json.dumps({"seed": seed, "pool": pool, "generator": "randomized",
                                                       "failed": failed, "videos": [s.to_dict() for s in kept]},
                                                      indent=1) + "\n", encoding="utf-8")
    log(f"{len(kept)} videos in {out_dir} ({len(failed)} failed)")
    return labels
