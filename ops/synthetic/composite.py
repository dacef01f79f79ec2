"""Test-video generator: single scenes and "sludge" composites, made with the ffmpeg CLI.

Why this exists: the index and the recall cascade have to be tested on videos
that look like what moderators see (split-screen, picture-in-picture and
collage uploads that stack unrelated feeds, with audio that belongs to none of
them) without shipping such videos in the repository. This module builds them
on demand, from real clips when ``../shared/media`` is present and from
ffmpeg's synthetic sources otherwise, so every test and the demo can make
exactly the material it needs.

Design choices, and why:

- One ``ffmpeg`` process per output, driven through ``-filter_complex``: every
  feed is scaled and cropped into its cell and overlaid on a background of the
  gap colour. Input paths go through argv (never into the filter graph), so
  file names need no escaping.
- Determinism: generated sources take every random parameter from a seed
  (Python's ``random.Random`` seeded with a string, which is stable across
  runs and machines), and encoding runs with ``+bitexact`` flags and a fixed
  thread count, so the same arguments give the same pixels (and, on one
  machine and ffmpeg build, the same bytes).
- Cheap: tests make many small videos, so encoders run at their fastest
  presets, expensive synthetic sources (fractals, per-pixel expressions,
  cellular automata) are rendered small and scaled up.
- Atomic: ffmpeg writes to a hidden temporary file next to the output, which
  is renamed into place only after ffmpeg succeeded; a failure never leaves a
  half-written video behind.
- Errors: anything that goes wrong raises :class:`~indexer.errors.CompositeError`
  whose message names the output, the offending input and, for ffmpeg
  failures, ffmpeg's last stderr lines.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from indexer.errors import CompositeError

__all__ = [
    "AUDIO_KINDS",
    "FITS",
    "GENERATED_KINDS",
    "LAYOUTS",
    "OUTPUT_FORMATS",
    "PIP_CORNERS",
    "PRESETS",
    "Feed",
    "generated_audio",
    "generated_source",
    "make_composite",
    "make_demo_set",
    "make_single",
    "probe_ffmpeg",
]

LAYOUTS: tuple[str, ...] = ("single", "vertical", "horizontal", "pip", "grid")
"""Screen layouts. ``vertical`` stacks feeds top to bottom (the classic 9:16
"gameplay under the clip" split screen), ``horizontal`` puts them side by side,
``pip`` lays a small feed over a full-canvas one, ``grid`` is a cols×rows collage."""

FITS: tuple[str, ...] = ("cover", "contain")
"""How a feed fills its cell: ``cover`` scales and crops (no bars, what uploads
usually do), ``contain`` scales to fit and pads with the gap colour (letterbox)."""

PIP_CORNERS: tuple[str, ...] = ("top-left", "top-right", "bottom-left", "bottom-right")

GENERATED_KINDS: list[str] = [
    "testsrc2",
    "mandelbrot",
    "life",
    "cellauto",
    "gradients",
    "smptehdbars",
    "boxes",
    "plasma",
    "gameplay",
    "solid",
]
"""Synthetic feeds (ffmpeg lavfi sources). All are deterministic given a seed.
``boxes`` is flat colour with moving boxes, ``plasma`` a smooth sine pattern,
``gameplay`` a pixel-art side-scroller, ``solid`` a flat colour (useful as a
control: it lets a test know exactly what a cell must contain)."""

AUDIO_KINDS: tuple[str, ...] = ("tone", "noise", "silence")
"""Generated audio: a sine tone, coloured noise, or digital silence. ``None``
(no audio stream at all) and a file path are the other choices."""

# Output extension -> (video codec args, audio codec args). Chosen from what
# Debian's ffmpeg 5.1 ships; all need yuv420p so every player and PyAV reads them.
OUTPUT_FORMATS: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")

PRESETS: tuple[str, ...] = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")
"""x264 speed presets accepted by ``preset`` (ignored for .webm / .avi, which
always use their fastest settings)."""

# Demuxers that turn text files into "video" (ANSI art renderers, subtitles).
_TEXT_FORMATS = frozenset(
    {"tty", "bin", "xbin", "adf", "idf", "ass", "srt", "webvtt", "subviewer", "microdvd"}
)
_STILL_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "tiff_pipe")
_COLOR_RE = re.compile(r"^(?:[A-Za-z]{3,30}|(?:#|0x)[0-9A-Fa-f]{6}(?:[0-9A-Fa-f]{2})?)$")
_GEN_PREFIX = "gen:"
_OFFSET_SEP = "#t="
_SAMPLE_RATE = 48000
_AUDIO_FRAME = {".webm": 960, ".avi": 1152}  # samples per encoder frame; AAC (others): 1024
_THREADS = "2"
_STDERR_LINES = 15

# Saturated, well separated colours: used where a seed picks a colour, so that
# two feeds with different seeds are easy to tell apart.
_PALETTE: list[tuple[int, int, int]] = [
    (230, 40, 40),  # red
    (40, 190, 60),  # green
    (40, 80, 230),  # blue
    (240, 220, 40),  # yellow
    (40, 210, 220),  # cyan
    (220, 50, 210),  # magenta
    (250, 140, 20),  # orange
    (130, 60, 200),  # purple
    (245, 245, 245),  # white
    (120, 80, 40),  # brown
]


# ---------------------------------------------------------------- helpers


def _hex(rgb: tuple[int, int, int]) -> str:
    return "0x{:02X}{:02X}{:02X}".format(*rgb)


def _even(v: float, lo: int = 2) -> int:
    return max(lo, round(v / 2.0) * 2)


def _rng(*parts: object) -> random.Random:
    # A string seed is hashed with SHA-512 by ``random``: stable across runs
    # and unaffected by PYTHONHASHSEED, which is what determinism needs.
    return random.Random(":".join(str(p) for p in parts))


def _derive_seed(*parts: object) -> int:
    return _rng("seed", *parts).randrange(0, 2**31 - 1)


def _render_size(
    size: tuple[int, int], *, long_side: int | None = None, div: int = 1
) -> tuple[int, int]:
    """Size to render an expensive source at before it is scaled up to ``size``."""
    w, h = size
    f = 1.0 / div
    if long_side is not None:
        f = min(f, long_side / max(w, h))
    f = min(f, 1.0)
    return _even(w * f, 8), _even(h * f, 8)


def _scale_to(size: tuple[int, int], rsize: tuple[int, int], flags: str) -> str:
    if rsize == size:
        return ""
    return f",scale={size[0]}:{size[1]}:flags={flags}"


# --------------------------------------------------------------- sources


def generated_source(
    kind: str, seed: int, *, size: tuple[int, int] = (640, 360), fps: int = 25
) -> str:
    """A lavfi filter chain (no inputs, one video output) for a synthetic feed.

    The string works both as ``ffmpeg -f lavfi -i STRING`` and as a chain inside
    ``-filter_complex``. Every parameter that varies (colours, rules, speeds,
    positions) is derived from ``seed``, so one (kind, seed, size, fps) always
    renders the same frames; different seeds give visibly different content.
    The output is exactly ``size`` at ``fps``; costly kinds render smaller and
    are scaled up (pixel-art kinds with nearest-neighbour, so they stay crisp).
    """
    if kind not in GENERATED_KINDS:
        raise CompositeError(
            f"unknown generated source kind {kind!r}; choose one of {', '.join(GENERATED_KINDS)}"
        )
    w, h = int(size[0]), int(size[1])
    if w < 8 or h < 8:
        raise CompositeError(f"generated source size {w}x{h} is too small (min 8x8)")
    r = _rng("gen", kind, seed)
    colors = r.sample(_PALETTE, 4)
    s = f"{w}x{h}"
    if kind == "testsrc2":
        hue = r.randrange(0, 360)
        flip = ",hflip" if r.random() < 0.5 else ""
        return f"testsrc2=s={s}:r={fps},hue=h={hue}{flip}"
    if kind == "smptehdbars":
        # Bars are canonical; the seed moves a small "station bug" box.
        bx, by = r.uniform(0.05, 0.8), r.uniform(0.05, 0.8)
        return (
            f"smptehdbars=s={s}:r={fps},"
            f"drawbox=x=iw*{bx:.3f}:y=ih*{by:.3f}:w=iw/8:h=ih/8:color={_hex(colors[0])}:t=fill"
        )
    if kind == "solid":
        c = _PALETTE[seed % len(_PALETTE)]
        return f"color=c={_hex(c)}:s={s}:r={fps}"
    if kind == "boxes":
        bg = tuple(int(v * 0.35) for v in colors[0])
        boxes = []
        for c in colors[1:]:
            bw, bh = r.uniform(0.12, 0.3), r.uniform(0.08, 0.2)
            bx, by = r.uniform(0.0, 1 - bw), r.uniform(0.0, 1 - bh)
            boxes.append(
                f"drawbox=x=iw*{bx:.3f}:y=ih*{by:.3f}:w=iw*{bw:.3f}:h=ih*{bh:.3f}"
                f":color={_hex(c)}:t=fill"
            )
        sh = r.choice((-1, 1)) * r.uniform(0.003, 0.01)
        sv = r.choice((-1, 1)) * r.uniform(0.002, 0.008)
        # scroll wraps the picture around, so the boxes glide across forever.
        return (
            f"color=c={_hex(bg)}:s={s}:r={fps},"
            + ",".join(boxes)
            + f",scroll=h={sh:.4f}:v={sv:.4f}"
        )
    if kind == "gradients":
        rs = _render_size((w, h), long_side=480)
        n = r.randint(2, 4)
        cs = ":".join(f"c{i}={_hex(c)}" for i, c in enumerate(colors[:n]))
        gtype = r.choice(("linear", "radial", "circular", "spiral"))
        return (
            f"gradients=s={rs[0]}x{rs[1]}:r={fps}:n={n}:{cs}:type={gtype}"
            f":speed={r.uniform(0.02, 0.08):.3f}:seed={seed % 2**32}"
            + _scale_to((w, h), rs, "bilinear")
        )
    if kind == "mandelbrot":
        points = [
            (-0.743644, -0.131826),
            (-0.7453, 0.1127),
            (-1.25066, 0.02012),
            (-0.16, 1.0405),
            (-0.722, 0.246),
            (-1.768778, -0.001739),
        ]
        x, y = r.choice(points)
        rs = _render_size((w, h), long_side=200)
        return (
            f"mandelbrot=s={rs[0]}x{rs[1]}:r={fps}:maxiter=96:start_x={x}:start_y={y}"
            f":start_scale={r.uniform(2.0, 3.0):.3f}:end_scale={r.uniform(0.002, 0.02):.4f}"
            f":end_pts={fps * r.randint(15, 30)}" + _scale_to((w, h), rs, "bicubic")
        )
    if kind == "life":
        rs = _render_size((w, h), div=r.choice((3, 4, 5)))
        rule = r.choice(("B3/S23", "B36/S23", "B3678/S34678"))
        return (
            f"life=s={rs[0]}x{rs[1]}:r={fps}:rule={rule}:seed={seed % 2**32}"
            f":ratio={r.uniform(0.15, 0.5):.3f}:mold={r.randint(5, 30)}"
            f":life_color={_hex(colors[0])}:death_color=0x101010:mold_color={_hex(colors[1])}"
            + _scale_to((w, h), rs, "neighbor")
        )
    if kind == "cellauto":
        rs = _render_size((w, h), div=r.choice((3, 4, 5)))
        rule = r.choice((18, 22, 30, 45, 73, 90, 110, 126, 150))
        fg, bg = colors[0], tuple(int(v * 0.2) for v in colors[1])
        lut = ":".join(f"{ch}='{b}+({f}-{b})*val/255'" for ch, f, b in zip("rgb", fg, bg))
        return (
            f"cellauto=s={rs[0]}x{rs[1]}:r={fps}:rule={rule}:seed={seed % 2**32}"
            f":ratio={r.uniform(0.2, 0.6):.3f},format=rgb24,lutrgb={lut}"
            + _scale_to((w, h), rs, "neighbor")
        )
    if kind == "plasma":
        rs = _render_size((w, h), long_side=64)
        f = [r.uniform(0.5, 2.5) for _ in range(6)]
        sp = [r.uniform(0.4, 2.0) * r.choice((-1, 1)) for _ in range(6)]

        def ch(i: int) -> str:
            return (
                f"128+127*sin(2*PI*X/W*{f[i]:.3f}+T*{sp[i]:.3f}"
                f"+sin(2*PI*Y/H*{f[(i + 3) % 6]:.3f}+T*{sp[(i + 3) % 6]:.3f}))"
            )

        return (
            f"nullsrc=s={rs[0]}x{rs[1]}:r={fps},geq=r='{ch(0)}':g='{ch(1)}':b='{ch(2)}'"
            + _scale_to((w, h), rs, "bilinear")
        )
    # gameplay: a side-scrolling pixel-art scene (tiled ground, pipes, clouds,
    # a player that stays put while the world scrolls under it), like the
    # mobile-game footage sludge uploads put under a clip. Built from drawbox,
    # drawgrid and scroll (which wraps around), so it costs almost nothing.
    rs = _render_size((w, h), long_side=192)
    rw, rh = rs
    sky, ground, obst, player = colors
    gy = int(rh * r.uniform(0.65, 0.8))
    tile = r.choice((6, 8, 10))
    parts = [
        f"color=c={_hex(tuple(int(v * 0.6) for v in ground))}:s={rw}x{rh}:r={fps}",
        f"drawgrid=w={tile}:h={tile}:t=2:color={_hex(ground)}",
        f"drawbox=x=0:y=0:w={rw}:h={gy}:color={_hex(tuple(int(v * 0.45) + 90 for v in sky))}:t=fill",
    ]
    n_obst = r.randint(2, 4)
    ow = max(4, int(min(rw, rh) * 0.08))
    for k in range(n_obst):
        ox = int(rw * (k + r.uniform(0.2, 0.8)) / n_obst)
        oh = int(rh * r.uniform(0.06, 0.16))
        parts.append(f"drawbox=x={ox}:y={gy - oh}:w={ow}:h={oh}:color={_hex(obst)}:t=fill")
    for _ in range(r.randint(1, 3)):
        cx, cy = int(rw * r.uniform(0, 0.85)), int(gy * r.uniform(0.1, 0.4))
        parts.append(
            f"drawbox=x={cx}:y={cy}:w={int(rw * 0.15)}:h={max(3, int(rh * 0.04))}:color=0xEEEEEE:t=fill"
        )
    parts.append(f"scroll=h={r.uniform(0.006, 0.015):.4f}")
    ps = max(4, int(min(rw, rh) * 0.09))
    parts.append(
        f"drawbox=x={int(rw * 0.2)}:y={gy - ps - int(rh * r.uniform(0.0, 0.12))}:w={ps}:h={ps}"
        f":color={_hex(player)}:t=fill"
    )
    # A score bar across the top, as games have.
    parts.append(f"drawbox=x=0:y=0:w={rw}:h={max(4, rh // 24)}:color=0x111111:t=fill")
    return ",".join(parts) + _scale_to((w, h), rs, "neighbor")


def generated_audio(kind: str, seed: int) -> str:
    """A lavfi chain for generated audio (48 kHz stereo): ``tone``, ``noise`` or ``silence``.

    The tone's pitch (a note between A3 and A5) and the noise's colour and
    generator seed come from ``seed``, so audio is as reproducible as video.
    """
    r = _rng("audio", kind, seed)
    fmt = f"aformat=sample_fmts=fltp:sample_rates={_SAMPLE_RATE}:channel_layouts=stereo"
    if kind == "tone":
        freq = 220.0 * 2 ** (r.randrange(0, 25) / 12.0)
        beep = r.choice((0, 2, 4))
        return f"sine=frequency={freq:.2f}:beep_factor={beep}:sample_rate={_SAMPLE_RATE},{fmt}"
    if kind == "noise":
        color = r.choice(("pink", "white", "brown"))
        return (
            f"anoisesrc=sample_rate={_SAMPLE_RATE}:amplitude={r.uniform(0.1, 0.3):.3f}"
            f":color={color}:seed={seed % 2**32},{fmt}"
        )
    if kind == "silence":
        return f"anullsrc=channel_layout=stereo:sample_rate={_SAMPLE_RATE},{fmt}"
    raise CompositeError(
        f"unknown generated audio kind {kind!r}; choose one of {', '.join(AUDIO_KINDS)}"
    )


# ------------------------------------------------------------------ feeds


@dataclass(frozen=True)
class Feed:
    """A feed with a start offset into a media file (seconds).

    Plain strings work too: ``"clip.mp4"``, ``"clip.mp4#t=3.5"`` (media-fragment
    style offset), ``"gen:life"`` or ``"gen:life:7"`` (generated, seed pinned).
    """

    source: str | Path
    offset: float = 0.0


@dataclass(frozen=True)
class _Resolved:
    kind: str  # "file" | "still" | "gen"
    label: str  # how the manifest names it (reusable as a feed string)
    path: str | None = None
    offset: float = 0.0
    loop: bool = False
    gen_kind: str = ""
    gen_seed: int = 0


def _probe_media(path: Path, what: str, *, want: str) -> tuple[bool, float | None]:
    """Check a file has a usable stream; return (is_still_image, duration or None).

    PyAV is already a dependency of the indexer; probing here turns a bad
    input into a clear error before ffmpeg is started.
    """
    if not path.exists():
        raise CompositeError(f"{what}: no such file: {path}")
    if path.is_dir():
        raise CompositeError(f"{what}: is a directory, not a media file: {path}")
    if path.stat().st_size == 0:
        raise CompositeError(f"{what}: file is empty (0 bytes): {path}")
    try:
        import av  # local import: only needed for file inputs
    except ImportError:  # pragma: no cover - av is a project dependency
        return False, None
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError) as e:
        reason = " ".join(str(getattr(e, "strerror", None) or e).split())
        raise CompositeError(f"{what}: not a readable media file ({reason}): {path}") from None
    try:
        fmt = container.format.name or ""
        if fmt in _TEXT_FORMATS:
            raise CompositeError(
                f"{what}: is a text file, not a video or audio file (ffmpeg reads it as {fmt!r}): {path}"
            )
        if want == "video":
            streams = [
                s
                for s in container.streams.video
                if not (int(s.disposition) & int(av.stream.Disposition.attached_pic))
            ]
            if not streams:
                raise CompositeError(f"{what}: has no video stream (not a video): {path}")
            still = fmt in _STILL_FORMATS or fmt.endswith("_pipe")
            stream = streams[0]
        else:
            if not container.streams.audio:
                raise CompositeError(f"{what}: has no audio stream: {path}")
            still = False
            stream = container.streams.audio[0]
        duration = None
        if container.duration is not None and container.duration > 0:
            duration = container.duration / 1_000_000
        elif stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base) or None
        return still, duration
    finally:
        container.close()


def _resolve_feed(
    item: str | Path | Feed | tuple, index: int, seed: int, duration: float
) -> _Resolved:
    what = f"feed {index + 1}"
    offset = 0.0
    if isinstance(item, Feed):
        src, offset = item.source, float(item.offset)
    elif isinstance(item, tuple) and len(item) == 2:
        src, offset = item[0], float(item[1])
    elif isinstance(item, (str, Path)):
        src = item
    else:
        raise CompositeError(
            f"{what}: expected a path, 'gen:KIND' or Feed, got {type(item).__name__}"
        )
    s = str(src)
    p = Path(s)
    if not p.exists() and _OFFSET_SEP in s:
        base, _, t = s.rpartition(_OFFSET_SEP)
        try:
            offset = float(t)
        except ValueError:
            raise CompositeError(
                f"{what}: bad offset {t!r} in {s!r} (use PATH#t=SECONDS)"
            ) from None
        s, p = base, Path(base)
    if not p.exists() and s.startswith(_GEN_PREFIX):
        parts = s[len(_GEN_PREFIX) :].split(":")
        kind = parts[0]
        if kind not in GENERATED_KINDS:
            raise CompositeError(
                f"{what}: unknown generated source {kind!r}; choose one of {', '.join(GENERATED_KINDS)}"
            )
        if len(parts) > 2:
            raise CompositeError(
                f"{what}: bad generated source {s!r} (use gen:KIND or gen:KIND:SEED)"
            )
        if len(parts) == 2:
            try:
                gseed = int(parts[1])
            except ValueError:
                raise CompositeError(f"{what}: bad seed in {s!r} (use gen:KIND:SEED)") from None
        else:
            gseed = _derive_seed(seed, index, kind)
        return _Resolved("gen", f"gen:{kind}:{gseed}", gen_kind=kind, gen_seed=gseed)
    if not math.isfinite(offset) or offset < 0:
        raise CompositeError(f"{what}: offset must be >= 0 seconds, got {offset}")
    still, clip_dur = _probe_media(p, what, want="video")
    if still:
        return _Resolved("still", str(p), path=str(p))
    if clip_dur is not None and offset >= clip_dur:
        raise CompositeError(
            f"{what}: offset {offset:g} s is past the end of {p} ({clip_dur:.2f} s long)"
        )
    # Loop when the clip runs out before the requested duration (or its length is unknown).
    loop = clip_dur is None or offset + duration > clip_dur - 0.05
    label = str(p) if offset == 0 else f"{p}{_OFFSET_SEP}{offset:g}"
    return _Resolved("file", label, path=str(p), offset=offset, loop=loop)


# --------------------------------------------------------------- geometry


def _split(total: int, n: int, gap: int) -> list[tuple[int, int]]:
    """(start, size) of n even-sized cells along one axis, separated by ``gap``."""
    avail = total - gap * (n - 1)
    base = (avail // n) // 2 * 2
    sizes = [base] * (n - 1) + [avail - base * (n - 1)]
    if min(sizes) < 16:
        raise CompositeError(
            f"cells would be under 16 px ({total} px split {n} ways with gap {gap})"
        )
    out, pos = [], 0
    for sz in sizes:
        out.append((pos, sz))
        pos += sz + gap
    return out


def _cells(
    layout: str,
    n: int,
    canvas: tuple[int, int],
    gap: int,
    grid: tuple[int, int],
    pip_corner: str,
    pip_scale: float,
) -> list[tuple[int, int, int, int, int]]:
    """Cells (x, y, w, h, border) in drawing order; border is only used by pip."""
    W, H = canvas
    if layout == "single":
        return [(0, 0, W, H, 0)]
    if layout == "vertical":
        return [(0, y, W, h, 0) for y, h in _split(H, n, gap)]
    if layout == "horizontal":
        return [(x, 0, w, H, 0) for x, w in _split(W, n, gap)]
    if layout == "grid":
        cols, rows = grid
        xs, ys = _split(W, cols, gap), _split(H, rows, gap)
        return [(x, y, w, h, 0) for y, h in ys for x, w in xs]
    # pip: the small feed keeps the canvas's aspect ratio, sits a margin away
    # from the chosen corner, and gets a border of ``gap`` pixels.
    pw, ph = _even(W * pip_scale, 16), _even(H * pip_scale, 16)
    margin = _even(min(W, H) * 0.04)
    ow, oh = pw + 2 * gap, ph + 2 * gap
    if ow + 2 * margin > W or oh + 2 * margin > H:
        raise CompositeError(f"pip feed ({pw}x{ph} with border {gap}) does not fit in {W}x{H}")
    left = "left" in pip_corner
    top = "top" in pip_corner
    ox = margin if left else W - margin - ow
    oy = margin if top else H - margin - oh
    return [(0, 0, W, H, 0), (ox + gap, oy + gap, pw, ph, gap)]


# ------------------------------------------------------------------ ffmpeg


def _ffmpeg_bin() -> str:
    """The ffmpeg executable: ``$SLUDGE_FFMPEG`` if set, else ``ffmpeg`` on PATH."""
    override = os.environ.get("SLUDGE_FFMPEG")
    found = shutil.which(override) if override else shutil.which("ffmpeg")
    if not found:
        name = override or "ffmpeg"
        raise CompositeError(
            f"{name} not found; test videos are made with the ffmpeg command-line tool. "
            "Install it (Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg) "
            "or point SLUDGE_FFMPEG at the binary"
        )
    return found


def probe_ffmpeg() -> str:
    """Return ffmpeg's version line (e.g. ``ffmpeg version 5.1.x ...``).

    Raises CompositeError with an install hint when ffmpeg is missing or does
    not run, so a CLI can check up front instead of failing mid-generation.
    """
    exe = _ffmpeg_bin()
    try:
        res = subprocess.run(
            [exe, "-hide_banner", "-version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CompositeError(
            f"{exe} does not run ({e}); reinstall it: apt-get install ffmpeg"
        ) from None
    first = (res.stdout or "").strip().splitlines()
    if res.returncode != 0 or not first:
        raise CompositeError(
            f"{exe} -version failed (exit {res.returncode}); reinstall it: apt-get install ffmpeg"
        )
    return first[0]


def _codec_args(suffix: str, crf: int, fps: int, audio: bool, preset: str) -> list[str]:
    if suffix == ".webm":
        v = [
            "-c:v",
            "libvpx-vp9",
            "-crf",
            str(round(crf * 63 / 51)),
            "-b:v",
            "0",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-row-mt",
            "1",
        ]
        a = ["-c:a", "libopus", "-b:a", "64k"]
    elif suffix == ".avi":
        v = ["-c:v", "mpeg4", "-q:v", str(max(2, min(31, round(2 + crf * 29 / 51))))]
        a = ["-c:a", "libmp3lame", "-b:a", "96k"]
    else:  # mp4 / m4v / mov / mkv
        v = ["-c:v", "libx264", "-preset", preset, "-crf", str(crf)]
        a = ["-c:a", "aac", "-b:a", "96k"]
    v += ["-pix_fmt", "yuv420p", "-g", str(2 * fps), "-threads", _THREADS]
    return v + (a + ["-ar", str(_SAMPLE_RATE), "-ac", "2"] if audio else ["-an"])


def _monotonic_setpts(fps: int) -> str:
    """A setpts filter that starts at 0 and never lets time run backwards.

    ``-stream_loop`` relies on the demuxer's idea of the file's duration to
    shift each repetition; some files (e.g. AVI with odd indexes) restart at
    the original timestamps instead, and the ``fps`` filter then drops every
    frame of the next loop, so ffmpeg never reaches ``-t`` and hangs. The
    expression keeps an offset in its variables (``st``/``ld`` persist across
    frames): whenever a timestamp does not increase, the offset is raised so
    the frame lands one output frame after the previous one.
    """
    step = f"1/({fps}*TB)"
    expr = (
        "if(eq(N,0),st(0,-PTS),if(lte(PTS,ld(1)),st(0,ld(2)+" + step + "-PTS),0));"
        "st(1,PTS);st(2,PTS+ld(0));ld(2)"
    )
    return f"setpts='{expr}'"


def _tail(text: str, n: int = _STDERR_LINES) -> str:
    lines = [ln.rstrip() for ln in (text or "").splitlines() if ln.strip()]
    return "\n".join(lines[-n:]) if lines else "(ffmpeg printed nothing)"


def _run_ffmpeg(args: list[str], out: Path, timeout: float) -> None:
    """Run ffmpeg writing to a temporary file beside ``out``; rename on success only."""
    out.parent.mkdir(parents=True, exist_ok=True)
    # A unique hidden name in the same directory (so the final rename is atomic),
    # keeping the extension so ffmpeg picks the container from it. ffmpeg creates
    # the file itself, so it gets the usual permissions (mkstemp's are 0600).
    tmp = out.with_name(f".{out.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.part{out.suffix}")
    tmp_name = str(tmp)
    try:
        try:
            res = subprocess.run(
                [*args, tmp_name],
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as e:
            err = (
                e.stderr.decode(errors="replace")
                if isinstance(e.stderr, bytes)
                else (e.stderr or "")
            )
            raise CompositeError(
                f"cannot write {out}: ffmpeg ran past {timeout:.0f} s and was stopped\n{_tail(err)}"
            ) from None
        except OSError as e:
            raise CompositeError(f"cannot write {out}: ffmpeg did not start ({e})") from None
        if res.returncode != 0:
            raise CompositeError(
                f"cannot write {out}: ffmpeg failed (exit {res.returncode})\n{_tail(res.stderr)}"
            )
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise CompositeError(
                f"cannot write {out}: ffmpeg exited 0 but wrote nothing\n{_tail(res.stderr)}"
            )
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


# -------------------------------------------------------------------- API


def _validate(
    layout: str,
    canvas: tuple[int, int],
    duration: float,
    fps: int,
    fit: str,
    gap: int,
    gap_color: str,
    pip_corner: str,
    pip_scale: float,
    grid: tuple[int, int],
    crf: int,
    out: Path,
) -> None:
    if layout not in LAYOUTS:
        raise CompositeError(
            f"{out}: unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}"
        )
    try:
        W, H = (int(v) for v in canvas)
    except (TypeError, ValueError):
        raise CompositeError(f"{out}: canvas must be (width, height), got {canvas!r}") from None
    if W % 2 or H % 2:
        raise CompositeError(
            f"{out}: canvas {W}x{H} must have even width and height (h264/yuv420p halves chroma)"
        )
    if not (32 <= W <= 4096 and 32 <= H <= 4096):
        raise CompositeError(f"{out}: canvas {W}x{H} out of range (32..4096 per side)")
    if not (isinstance(duration, (int, float)) and math.isfinite(duration) and 0 < duration <= 600):
        raise CompositeError(f"{out}: duration must be in (0, 600] seconds, got {duration!r}")
    if not (isinstance(fps, int) and 1 <= fps <= 120):
        raise CompositeError(f"{out}: fps must be an integer in 1..120, got {fps!r}")
    if fit not in FITS:
        raise CompositeError(f"{out}: unknown fit {fit!r}; choose one of {', '.join(FITS)}")
    if not isinstance(gap, int) or gap < 0 or gap % 2:
        raise CompositeError(f"{out}: gap must be an even number of pixels >= 0, got {gap!r}")
    if not _COLOR_RE.match(gap_color or ""):
        raise CompositeError(
            f"{out}: gap_color {gap_color!r} is not a colour name or #RRGGBB / 0xRRGGBB"
        )
    if pip_corner not in PIP_CORNERS:
        raise CompositeError(
            f"{out}: unknown pip_corner {pip_corner!r}; choose one of {', '.join(PIP_CORNERS)}"
        )
    if not (0.1 <= float(pip_scale) <= 0.8):
        raise CompositeError(f"{out}: pip_scale must be in [0.1, 0.8], got {pip_scale!r}")
    if layout == "grid":
        try:
            cols, rows = (int(v) for v in grid)
        except (TypeError, ValueError):
            raise CompositeError(f"{out}: grid must be (cols, rows), got {grid!r}") from None
        if not (1 <= cols <= 8 and 1 <= rows <= 8 and cols * rows >= 2):
            raise CompositeError(
                f"{out}: grid {cols}x{rows} must be 1..8 by 1..8 with at least 2 cells"
            )
    if not (isinstance(crf, int) and 0 <= crf <= 51):
        raise CompositeError(f"{out}: crf must be an integer in 0..51, got {crf!r}")
    if out.suffix.lower() not in OUTPUT_FORMATS:
        raise CompositeError(
            f"{out}: unsupported output extension {out.suffix!r}; use one of {', '.join(OUTPUT_FORMATS)}"
        )
    if out.is_dir():
        raise CompositeError(f"{out}: output path is a directory")


def _feed_count(layout: str, grid: tuple[int, int]) -> tuple[int, int, int]:
    """(min, max, default) number of feeds for a layout."""
    if layout == "single":
        return 1, 1, 1
    if layout in ("vertical", "horizontal"):
        return 2, 3, 2
    if layout == "pip":
        return 2, 2, 2
    n = int(grid[0]) * int(grid[1])
    return n, n, n


def _default_feeds(layout: str, n: int, seed: int) -> list[str]:
    """Distinct generated kinds for ``n`` feeds, chosen from the seed."""
    r = _rng("feeds", layout, seed)
    kinds = [k for k in GENERATED_KINDS if k != "solid"]
    chosen: list[str] = []
    while len(chosen) < n:
        chosen += r.sample(kinds, min(len(kinds), n - len(chosen)))
    return [f"{_GEN_PREFIX}{k}:{_derive_seed(seed, i, k)}" for i, k in enumerate(chosen)]


def make_composite(
    out: str | Path,
    layout: str,
    *,
    feeds: Sequence[str | Path | Feed] | None = None,
    canvas: tuple[int, int] = (720, 1280),
    duration: float = 6.0,
    fps: int = 25,
    audio: str | Path | None = "tone",
    seed: int = 0,
    fit: str = "cover",
    gap: int = 0,
    gap_color: str = "black",
    pip_corner: str = "bottom-right",
    pip_scale: float = 0.33,
    grid: tuple[int, int] = (2, 2),
    crf: int = 28,
    preset: str = "veryfast",
) -> Path:
    """Render a (composite) video and return its path.

    - ``layout``: one of :data:`LAYOUTS`. ``vertical``/``horizontal`` take 2 or 3
      feeds, ``pip`` 2 (the first fills the canvas, the second is the small
      one), ``grid`` ``cols*rows`` feeds in row-major order, ``single`` 1.
    - ``feeds``: media paths (``"clip.mp4"``, ``"clip.mp4#t=3.5"``,
      :class:`Feed`), images (shown still) or ``"gen:KIND[:SEED]"``. ``None``
      picks distinct generated kinds from ``seed``. Clips shorter than
      ``offset + duration`` are looped; rotation metadata is honoured.
    - ``canvas``: (width, height), both even; default 720x1280 (9:16).
    - ``audio``: ``"tone"`` (default), ``"noise"``, ``"silence"`` (a silent
      track), ``None`` (no audio stream), or a media file with audio (looped /
      trimmed to ``duration``). It is never taken from the feeds: sludge pairs
      footage with unrelated sound, and tests need to control it.
    - ``fit``: ``"cover"`` (scale + crop) or ``"contain"`` (scale + bars in
      ``gap_color``). ``gap``: even pixel width of the separators between cells
      (and of the border around the pip feed), in ``gap_color``.
    - ``grid``: (cols, rows). ``crf``: quality (0 best .. 51 worst; mapped to
      VP9 / MPEG-4 scales for .webm / .avi). ``preset``: x264 speed preset
      (:data:`PRESETS`); ``ultrafast`` is ~3x quicker than the default
      ``veryfast`` at the cost of ~2-3x larger files, handy in tests.
    - The container follows the extension: .mp4/.m4v/.mov/.mkv → H.264 + AAC,
      .webm → VP9 + Opus, .avi → MPEG-4 part 2 + MP3.

    Raises CompositeError (naming ``out`` and the problem) on bad arguments,
    unusable inputs or an ffmpeg failure; no partial output is left behind.
    """
    out = Path(out)
    _validate(
        layout, canvas, duration, fps, fit, gap, gap_color, pip_corner, pip_scale, grid, crf, out
    )
    if preset not in PRESETS:
        raise CompositeError(
            f"{out}: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}"
        )
    W, H = int(canvas[0]), int(canvas[1])
    grid = (int(grid[0]), int(grid[1]))
    duration = float(duration)
    lo, hi, default_n = _feed_count(layout, grid)
    if feeds is None:
        feeds = _default_feeds(layout, default_n, seed)
    elif isinstance(feeds, (str, Path, Feed)):
        raise CompositeError(f"{out}: feeds must be a list, got a single {type(feeds).__name__}")
    feeds = list(feeds)
    if not lo <= len(feeds) <= hi:
        want = (f"{lo} feed" if lo == 1 else f"{lo} feeds") if lo == hi else f"{lo} to {hi} feeds"
        raise CompositeError(f"{out}: layout {layout!r} takes {want}, got {len(feeds)}")

    exe = _ffmpeg_bin()
    try:
        resolved = [_resolve_feed(f, i, seed, duration) for i, f in enumerate(feeds)]
    except CompositeError as e:
        raise CompositeError(f"{out}: {e}") from None
    cells = _cells(layout, len(resolved), (W, H), gap, grid, pip_corner, float(pip_scale))

    args: list[str] = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    graph: list[str] = [f"color=c={gap_color}:s={W}x{H}:r={fps},format=yuv420p[bg0]"]
    n_inputs = 0
    for i, (rf, (x, y, w, h, border)) in enumerate(zip(resolved, cells)):
        if rf.kind == "gen":
            head = generated_source(rf.gen_kind, rf.gen_seed, size=(w, h), fps=fps) + ","
        else:
            if rf.kind == "still":
                args += ["-loop", "1", "-framerate", str(fps)]
            else:
                if rf.loop:
                    args += ["-stream_loop", "-1"]
                if rf.offset > 0:
                    args += ["-ss", f"{rf.offset:.3f}"]
            args += ["-threads", _THREADS, "-i", rf.path]
            head = f"[{n_inputs}:v:0]{_monotonic_setpts(fps)},"
            n_inputs += 1
        if fit == "cover":
            sc = f"scale={w}:{h}:force_original_aspect_ratio=increase:flags=bicubic,crop={w}:{h}"
        else:
            sc = (
                f"scale={w}:{h}:force_original_aspect_ratio=decrease:force_divisible_by=2:flags=bicubic,"
                f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color={gap_color}"
            )
        pad = ""
        if border:
            pad = f",pad={w + 2 * border}:{h + 2 * border}:{border}:{border}:color={gap_color}"
        graph.append(f"{head}fps={fps},{sc},setsar=1,format=yuv420p{pad}[f{i}]")
        graph.append(
            f"[bg{i}][f{i}]overlay=x={x - border}:y={y - border}:eof_action=repeat[bg{i + 1}]"
        )
    vout = f"bg{len(resolved)}"
    graph.append(f"[{vout}]setsar=1[vout]")

    audio_label: str | None = None
    # Hand the encoder whole frames of its own size (Opus 960, MP3 1152, AAC 1024
    # samples): ffmpeg 5.1 sometimes passes the first frames from a complex graph
    # before it has told the graph the encoder's frame size, and libopus then
    # fails with "more samples than frame size".
    frames = f"asetnsamples=n={_AUDIO_FRAME.get(out.suffix.lower(), 1024)}:p=0"
    if audio is not None:
        a = str(audio)
        kind = a.removeprefix(_GEN_PREFIX)
        if kind in AUDIO_KINDS and not Path(a).exists():
            graph.append(
                generated_audio(kind, _derive_seed(seed, "audio", kind)) + f",{frames}[aout]"
            )
            audio_label = kind
        else:
            try:
                _probe_media(Path(a), "audio", want="audio")
            except CompositeError as e:
                raise CompositeError(
                    f"{out}: {e} (audio must be a file or one of {', '.join(AUDIO_KINDS)}, or None)"
                ) from None
            args += ["-stream_loop", "-1", "-threads", _THREADS, "-i", a]
            graph.append(
                f"[{n_inputs}:a:0]asetpts=PTS-STARTPTS,aresample={_SAMPLE_RATE},"
                f"aformat=sample_fmts=fltp:sample_rates={_SAMPLE_RATE}:channel_layouts=stereo,"
                f"{frames}[aout]"
            )
            n_inputs += 1
            audio_label = a

    args += ["-filter_complex", ";".join(graph), "-filter_complex_threads", _THREADS]
    args += ["-map", "[vout]"]
    if audio_label is not None:
        args += ["-map", "[aout]"]
    args += ["-t", f"{duration:.3f}", "-r", str(fps)]
    args += _codec_args(out.suffix.lower(), crf, fps, audio_label is not None, preset)
    args += [
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-flags:a",
        "+bitexact",
        "-map_metadata",
        "-1",
        "-map_chapters",
        "-1",
    ]
    # Generous: a slow 2-core machine encodes a 720x1280 clip at ~100 fps.
    timeout = 60.0 + duration * fps * max(1, len(resolved)) * 0.2
    _run_ffmpeg(args, out, timeout)
    return out


def make_single(
    out: str | Path,
    *,
    source: str | Path | Feed | None = None,
    canvas: tuple[int, int] = (720, 1280),
    duration: float = 6.0,
    fps: int = 25,
    audio: str | Path | None = "tone",
    seed: int = 0,
    fit: str = "cover",
    crf: int = 28,
    preset: str = "veryfast",
) -> Path:
    """A single-scene clip: one feed filling the canvas.

    Single-scene clips are the negatives next to composites (and the "history"
    a composite's feeds come from). ``source`` is a media path, ``Feed``,
    ``"gen:KIND[:SEED]"`` or None (a generated kind picked from ``seed``).
    """
    feeds = None if source is None else [source]
    return make_composite(
        out,
        "single",
        feeds=feeds,
        canvas=canvas,
        duration=duration,
        fps=fps,
        audio=audio,
        seed=seed,
        fit=fit,
        crf=crf,
        preset=preset,
    )


# ------------------------------------------------------------------- demo

_VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".avi"}
_AUDIO_SUFFIXES = {".mp3", ".wav", ".flac", ".ogg", ".aiff", ".m4a", ".opus"}


def _real_pool(media_dir: Path, rng: random.Random, min_s: float) -> list[tuple[str, float]]:
    """Usable clips from video/real and video/film, diverse sources first.

    Clips are grouped by origin (the part of the name before ``__``) and taken
    round-robin, so a demo does not end up with five near-identical clips of
    one data set (e.g. the ASL gesture clips).
    """
    groups: dict[str, list[tuple[str, float]]] = {}
    for sub in ("video/real", "video/film"):
        d = media_dir / sub
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if p.suffix.lower() not in _VIDEO_SUFFIXES or not p.is_file():
                continue
            try:
                still, dur = _probe_media(p, "clip", want="video")
            except CompositeError:
                continue
            if still or dur is None or dur < min_s:
                continue
            groups.setdefault(p.name.split("__")[0], []).append((str(p), dur))
    order = sorted(groups)
    rng.shuffle(order)
    for k in order:
        rng.shuffle(groups[k])
    pool: list[tuple[str, float]] = []
    while any(groups[k] for k in order):
        for k in order:
            if groups[k]:
                pool.append(groups[k].pop())
    return pool


def _audio_pool(media_dir: Path) -> list[str]:
    out: list[str] = []
    for sub in ("speech", "audio"):
        d = media_dir / sub
        if d.is_dir():
            out += [str(p) for p in sorted(d.iterdir()) if p.suffix.lower() in _AUDIO_SUFFIXES]
    return out


def make_demo_set(
    out_dir: str | Path,
    *,
    media_dir: str | Path | None = None,
    seed: int = 0,
    short_side: int = 720,
    duration: float = 5.0,
    preset: str = "veryfast",
) -> list[dict]:
    """Generate the demo's videos and ``manifest.json``; return the manifest entries.

    ``out_dir/history/``: 8 videos (single scenes and vertical / horizontal /
    pip / grid composites, 9:16 and 16:9, each with unrelated audio) that play
    the part of what the platform has already seen.
    ``out_dir/new/composite.mp4``: a vertical split screen *not* in history,
    whose two feeds are footage that history contains (same clip, same
    offset), which is what recall must find. ``out_dir/new/single.mp4``: a
    single-scene clip of footage that history does not contain (a negative).

    With ``media_dir`` (e.g. ``../shared/media``) present, feeds are real clips
    from ``video/real`` and ``video/film`` and audio comes from ``speech/`` and
    ``audio/``; otherwise feeds are generated sources and audio is generated.
    Same ``seed`` → same set. Entries: name, path, layout, feeds (strings that
    :func:`make_composite` accepts), audio, canvas, duration, fps, split, and
    shares_feeds_with (names of history videos with the same footage).

    Defaults (720x1280 / 1280x720, 5 s) take about 30 s on 2 cores; tests pass
    a smaller ``short_side`` (even, >= 64) and ``duration`` (1..10 s).
    """
    out_dir = Path(out_dir)
    if not (isinstance(short_side, int) and short_side >= 64 and short_side % 2 == 0):
        raise CompositeError(
            f"{out_dir}: short_side must be an even integer >= 64, got {short_side!r}"
        )
    if not (1.0 <= float(duration) <= 10.0):
        raise CompositeError(f"{out_dir}: demo duration must be 1..10 s, got {duration!r}")
    duration = float(duration)
    rng = _rng("demo", seed)
    long_side = _even(short_side * 16 / 9)
    portrait, landscape = (short_side, long_side), (long_side, short_side)
    media = Path(media_dir) if media_dir is not None else None
    use_media = media is not None and media.is_dir()
    clips = _real_pool(media, rng, min_s=2.0) if use_media else []
    audios = _audio_pool(media) if use_media else []
    use_media = use_media and len(clips) >= 16

    counter = iter(range(10_000))

    def feed() -> str:
        i = next(counter)
        if use_media:
            path, dur = clips[i]
            room = max(0.0, dur - duration - 0.1)
            off = round(rng.uniform(0.0, room), 2) if room > 0 else 0.0
            return f"{path}{_OFFSET_SEP}{off:g}" if off > 0 else path
        kinds = [k for k in GENERATED_KINDS if k != "solid"]
        return f"{_GEN_PREFIX}{kinds[i % len(kinds)]}:{_derive_seed(seed, 'demo', i)}"

    def sound(j: int) -> str:
        if use_media and audios and j % 4 != 3:
            return audios[rng.randrange(len(audios))]
        return ("tone", "noise")[j % 2]

    plan: list[dict] = [
        {"name": "h01_single", "layout": "single", "n": 1, "canvas": portrait},
        {"name": "h02_single", "layout": "single", "n": 1, "canvas": landscape},
        {"name": "h03_vertical", "layout": "vertical", "n": 2, "canvas": portrait},
        {"name": "h04_horizontal", "layout": "horizontal", "n": 2, "canvas": landscape},
        {"name": "h05_pip", "layout": "pip", "n": 2, "canvas": landscape},
        {"name": "h06_grid", "layout": "grid", "n": 4, "canvas": portrait},
        {"name": "h07_vertical3", "layout": "vertical", "n": 3, "canvas": portrait, "gap": 8},
        {"name": "h08_single", "layout": "single", "n": 1, "canvas": portrait},
    ]
    entries: list[dict] = []
    for j, item in enumerate(plan):
        item["feeds"] = [feed() for _ in range(item["n"])]
        item["audio"] = sound(j)
        item["split"] = "history"
        item["path"] = out_dir / "history" / f"{item['name']}.mp4"
    # New composite: top = footage of h01 (single), bottom = the top feed of h03.
    plan.append(
        {
            "name": "new_composite",
            "layout": "vertical",
            "n": 2,
            "canvas": portrait,
            "feeds": [plan[0]["feeds"][0], plan[2]["feeds"][0]],
            "audio": sound(len(plan)),
            "split": "new",
            "path": out_dir / "new" / "composite.mp4",
        }
    )
    plan.append(
        {
            "name": "new_single",
            "layout": "single",
            "n": 1,
            "canvas": portrait,
            "feeds": [feed()],
            "audio": sound(len(plan)),
            "split": "new",
            "path": out_dir / "new" / "single.mp4",
        }
    )
    for j, item in enumerate(plan):
        make_composite(
            item["path"],
            item["layout"],
            feeds=item["feeds"],
            canvas=item["canvas"],
            duration=duration,
            audio=item["audio"],
            seed=_derive_seed(seed, "demo-item", j),
            gap=item.get("gap", 0),
            gap_color="white",
            preset=preset,
        )
        footage = {f.split(_OFFSET_SEP)[0] for f in item["feeds"]}
        shares = [
            o["name"]
            for o in plan
            if o is not item
            and o["split"] == "history"
            and footage & {f.split(_OFFSET_SEP)[0] for f in o["feeds"]}
        ]
        entries.append(
            {
                "name": item["name"],
                "path": str(item["path"]),
                "layout": item["layout"],
                "feeds": list(item["feeds"]),
                "audio": item["audio"],
                "canvas": list(item["canvas"]),
                "duration": duration,
                "fps": 25,
                "split": item["split"],
                "shares_feeds_with": shares,
            }
        )
    manifest = out_dir / "manifest.json"
    tmp = manifest.with_name(".manifest.json.part")
    tmp.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, manifest)
    return entries
