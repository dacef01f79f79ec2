"""The layout development set: a recipe kept in the repository, media built on demand.

Nothing here ships media. :data:`RECIPE` lists templates (layout, canvas,
number of feeds, fit, gaps, quality, and the hard negatives built from single
clips); :func:`build_devset` turns them into videos from the real clips in
``../shared/media`` and writes ``labels.csv`` (``path,layout,...``) and
``manifest.json`` next to them.

Clips are split by file into two pools, **dev** and **heldout**, by a hash of
the file name (:func:`clip_pool`), so a detector tuned on ``dev`` can be
checked on composites of clips it has never seen (``--pool heldout``).

Standard stacks, grids and picture-in-picture go through the project's
generator (:func:`ops.synthetic.composite.make_composite`); the rest (feeds of
different sizes, caption bands, logos, burned-in text, borders, pans, still
shots) are one ffmpeg filter graph each, built here.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ops.synthetic.composite import _monotonic_setpts, make_composite

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
)
VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".avi"}
P916 = [(360, 640), (540, 960), (720, 1280)]
L169 = [(640, 360), (960, 540), (1280, 720)]

# ---------------------------------------------------------------- the recipe
# Each template: label (one of indexer.layout.LAYOUTS), kind (how it is built),
# count (videos per pool), and parameters that are drawn per video from the
# listed choices. Single-feed templates are the negatives, hard ones included.
RECIPE: list[dict] = [
    # -- several feeds (generator)
    {"label": "vertical", "kind": "stack", "layout": "vertical", "n": [2], "canvas": P916, "count": 8},
    {"label": "vertical", "kind": "stack", "layout": "vertical", "n": [3], "canvas": P916, "count": 5},
    {"label": "vertical", "kind": "stack", "layout": "vertical", "n": [2], "canvas": P916,
     "gap": [4, 8, 16], "gap_color": ["black", "white", "#202020"], "count": 5},
    {"label": "vertical", "kind": "stack", "layout": "vertical", "n": [2], "canvas": P916,
     "fit": ["contain"], "count": 5},
    {"label": "vertical", "kind": "stack", "layout": "vertical", "n": [2], "canvas": L169, "count": 3},
    {"label": "vertical", "kind": "uneven_vertical", "canvas": P916, "count": 5},
    {"label": "horizontal", "kind": "stack", "layout": "horizontal", "n": [2], "canvas": L169, "count": 7},
    {"label": "horizontal", "kind": "stack", "layout": "horizontal", "n": [3], "canvas": L169, "count": 4},
    {"label": "horizontal", "kind": "stack", "layout": "horizontal", "n": [2], "canvas": L169,
     "gap": [4, 8, 16], "gap_color": ["black", "white"], "count": 4},
    {"label": "horizontal", "kind": "stack", "layout": "horizontal", "n": [2], "canvas": P916, "count": 3},
    {"label": "horizontal", "kind": "stack", "layout": "horizontal", "n": [2], "canvas": L169,
     "fit": ["contain"], "count": 3},
    {"label": "picture-in-picture", "kind": "stack", "layout": "pip", "n": [2], "canvas": L169 + P916,
     "pip_scale": [0.25, 0.3, 0.33, 0.4], "gap": [0, 0, 4], "count": 10},
    {"label": "grid", "kind": "stack", "layout": "grid", "grid": [(2, 2)], "canvas": P916 + L169,
     "count": 8},
    {"label": "grid", "kind": "stack", "layout": "grid", "grid": [(2, 2)], "canvas": P916 + L169,
     "gap": [4, 8], "gap_color": ["black", "white"], "count": 3},
    {"label": "grid", "kind": "stack", "layout": "grid", "grid": [(3, 2), (2, 3), (3, 3)],
     "canvas": P916 + L169, "count": 3},
    # -- one feed (negatives)
    {"label": "single_scene", "kind": "single", "canvas": P916 + L169, "count": 14},
    {"label": "single_scene", "kind": "letterbox", "canvas": P916, "count": 7},
    {"label": "single_scene", "kind": "pillarbox", "canvas": L169, "count": 5},
    {"label": "single_scene", "kind": "caption", "canvas": P916, "count": 8},
    {"label": "single_scene", "kind": "caption_letterbox", "canvas": P916, "count": 6},
    {"label": "single_scene", "kind": "logo", "canvas": P916 + L169, "count": 6},
    {"label": "single_scene", "kind": "text", "canvas": P916 + L169, "count": 6},
    {"label": "single_scene", "kind": "border", "canvas": P916 + L169, "count": 5},
    {"label": "single_scene", "kind": "pan", "canvas": P916, "count": 5},
    {"label": "single_scene", "kind": "still", "canvas": P916 + L169, "count": 4},
    # appended last, so that the videos before it stay what they were for a given seed
    {"label": "single_scene", "kind": "blur_fill", "canvas": P916 + L169, "count": 6},
    # -- feeds of one source (one room, one camera, people centred): their walls and light match, so
    # the seams between them are faint. Appended last, like blur fill.
    {"label": "vertical", "kind": "stack", "layout": "vertical", "n": [2, 3], "canvas": P916,
     "same_source": True, "count": 3},
    {"label": "horizontal", "kind": "stack", "layout": "horizontal", "n": [2, 3], "canvas": L169,
     "same_source": True, "count": 3},
    {"label": "picture-in-picture", "kind": "stack", "layout": "pip", "n": [2], "canvas": L169 + P916,
     "pip_scale": [0.25, 0.3, 0.33, 0.4], "same_source": True, "count": 2},
]
CRFS = [18, 23, 28, 28, 33, 38]
DURATION = 4.0
FPS = 25
HELDOUT_FRACTION = 0.4


def clip_pool(name: str) -> str:
    """'dev' or 'heldout' for a clip file name (stable: a hash of the name)."""
    h = int(hashlib.sha256(name.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "heldout" if h < HELDOUT_FRACTION else "dev"


@dataclass(frozen=True)
class Clip:
    path: str
    duration: float
    width: int
    height: int


def find_clips(media_dir: str | Path, pool: str, min_s: float = 1.5) -> list[Clip]:
    """Usable real clips (video/real, video/film) of one pool, sorted by path."""
    import av

    out: list[Clip] = []
    for sub in ("video/real", "video/film"):
        d = Path(media_dir) / sub
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if p.suffix.lower() not in VIDEO_SUFFIXES or clip_pool(p.name) != pool:
                continue
            try:
                with av.open(str(p), metadata_errors="ignore") as c:
                    s = c.streams.video[0]
                    dur = (c.duration or 0) / 1e6 or float((s.duration or 0) * (s.time_base or 0))
                    w, h = s.codec_context.width, s.codec_context.height
                    rot = 0
                    for fr in c.decode(s):
                        rot = int(round(getattr(fr, "rotation", 0) or 0)) % 180
                        break
                    if rot == 90:
                        w, h = h, w
            except Exception:  # noqa: BLE001 - unreadable clips are simply not used
                continue
            if dur >= min_s and w >= 64 and h >= 64:
                out.append(Clip(str(p), dur, w, h))
    return out


def font_file() -> str | None:
    for f in FONT_CANDIDATES:
        if Path(f).exists():
            return f
    return None


# ------------------------------------------------------------------ builders

def _feed_input(clip: Clip, offset: float, duration: float) -> list[str]:
    args = []
    if offset + duration > clip.duration - 0.1:
        args += ["-stream_loop", "-1"]
    if offset > 0:
        args += ["-ss", f"{offset:.2f}"]
    return args + ["-i", clip.path]


def _even(v: float) -> int:
    return max(2, int(round(v / 2)) * 2)


def _text_filter(font: str | None, text: str, x: str, y: str, size: int, color: str,
                 box: str | None = None, enable: str | None = None) -> str:
    if font is None:  # no font: a text-like block of the same size
        w = _even(size * 0.6 * len(text))
        f = f"drawbox=x={x}:y={y}:w={w}:h={size}:color={color}:t=fill"
    else:
        safe = text.replace(":", " ").replace("'", "")
        f = f"drawtext=fontfile={font}:text='{safe}':x={x}:y={y}:fontsize={size}:fontcolor={color}"
        if box:
            f += f":box=1:boxcolor={box}:boxborderw={max(2, size // 4)}"
    if enable:
        f += f":enable='{enable}'"
    return f


WORDS = ("wait for it", "no way", "this is crazy", "part 2", "follow for more", "you won't believe",
         "watch till the end", "FACTS", "top 5 moments", "day 14 of trying", "he did WHAT", "LOL")


def _custom(out: Path, kind: str, clips: list[tuple[Clip, float]], canvas: tuple[int, int],
            rng: random.Random, crf: int) -> dict:
    """One ffmpeg graph for the layouts the generator does not make. Returns details."""
    W, H = canvas
    font = font_file()
    dur = DURATION
    inputs: list[str] = []
    for c, off in clips:
        inputs += _feed_input(c, off, dur)
    base = f"{_monotonic_setpts(FPS)},fps={FPS},setpts=N/({FPS}*TB)"
    cover = "scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},setsar=1"
    contain = "scale={w}:{h}:force_original_aspect_ratio=decrease:force_divisible_by=2,setsar=1"
    detail: dict = {"kind": kind}
    bgc = rng.choice(["black", "black", "white", "#1a1a1a", "#f0e68c"])
    g: list[str] = []
    post: list[str] = []
    if kind == "uneven_vertical":
        top_h = _even(W * 9 / 16)
        bar = rng.choice([0, 8, 24, 60])
        bot_h = H - top_h - bar
        y2 = top_h + bar
        if rng.random() < 0.5:  # wide feed at the bottom instead
            top_h, bot_h = bot_h, top_h
            y2 = top_h + bar
        g.append(f"color=c={bgc}:s={W}x{H}:r={FPS}[bg]")
        g.append(f"[0:v]{base},{cover.format(w=W, h=top_h)}[a]")
        g.append(f"[1:v]{base},{cover.format(w=W, h=bot_h)}[b]")
        g.append("[bg][a]overlay=0:0[t]")
        g.append(f"[t][b]overlay=0:{y2}:shortest=0[v0]")
        detail.update(bar=bar, split=y2)
    elif kind in ("letterbox", "pillarbox", "caption_letterbox"):
        bgc = rng.choice(["black", "black", "black", "#101010", "white"])
        g.append(f"color=c={bgc}:s={W}x{H}:r={FPS}[bg]")
        pre = ""
        if kind == "pillarbox":  # a narrow (portrait, 3:4 or square) picture in a wide canvas
            a = rng.choice([9 / 16, 3 / 4, 1.0])
            pre = f"crop='min(iw,ih*{a:.4f})':ih,"
        g.append(f"[0:v]{base},{pre}{contain.format(w=W, h=H)}[a]")
        g.append("[bg][a]overlay=(W-w)/2:(H-h)/2:shortest=0[v0]")
        if kind == "caption_letterbox":
            size = _even(H * rng.uniform(0.03, 0.05))
            txt = rng.choice(WORDS)
            col = "black" if bgc == "white" else "white"
            post.append(_text_filter(font, txt, "(w-text_w)/2", f"{int(H * 0.12)}", size, col))
            if rng.random() < 0.6:
                post.append(_text_filter(font, rng.choice(WORDS), "(w-text_w)/2", f"{int(H * 0.82)}",
                                         size, col))
    elif kind == "caption":
        band = _even(H * rng.uniform(0.1, 0.22))
        where = rng.choice(["top", "top", "bottom", "both"])
        top = band if where in ("top", "both") else 0
        bot = band if where in ("bottom", "both") else 0
        vh = H - top - bot
        bandc = rng.choice(["white", "black", "#ffd700", "#202020", "#e0e0ff"])
        col = "black" if bandc in ("white", "#ffd700", "#e0e0ff") else "white"
        g.append(f"color=c={bandc}:s={W}x{H}:r={FPS}[bg]")
        g.append(f"[0:v]{base},{cover.format(w=W, h=vh)}[a]")
        g.append(f"[bg][a]overlay=0:{top}:shortest=0[v0]")
        size = _even(band * rng.uniform(0.22, 0.35))
        if top:
            post.append(_text_filter(font, rng.choice(WORDS), "(w-text_w)/2", f"{(top - size) // 2}",
                                     size, col))
        if bot:
            post.append(_text_filter(font, rng.choice(WORDS), "(w-text_w)/2",
                                     f"{H - bot + (bot - size) // 2}", size, col))
        detail.update(band=band, where=where)
    elif kind in ("logo", "text", "single"):
        g.append(f"[0:v]{base},{cover.format(w=W, h=H)}[v0]")
        if kind == "logo":
            lw, lh = _even(min(W, H) * rng.uniform(0.12, 0.22)), _even(min(W, H) * rng.uniform(0.06, 0.1))
            corner = rng.choice(["tl", "tr", "bl", "br"])
            m = _even(min(W, H) * 0.03)
            x = m if corner[1] == "l" else W - m - lw
            y = m if corner[0] == "t" else H - m - lh
            post.append(f"drawbox=x={x}:y={y}:w={lw}:h={lh}:color=white@0.6:t=fill")
            post.append(_text_filter(font, "LOGO", f"{x + lw // 8}", f"{y + lh // 4}", max(8, lh // 2),
                                     "black"))
            detail.update(corner=corner)
        elif kind == "text":
            size = _even(min(W, H) * rng.uniform(0.04, 0.07))
            y = int(H * rng.uniform(0.6, 0.85))
            for i in range(int(dur)):
                post.append(_text_filter(font, rng.choice(WORDS), "(w-text_w)/2", f"{y}", size, "white",
                                         box="black@0.5", enable=f"between(t,{i},{i + 1})"))
            if rng.random() < 0.5:
                post.append(_text_filter(font, "@" + rng.choice(["clips", "daily", "viral"]) + "hub",
                                         "(w-text_w)/2", f"{int(H * 0.1)}", size, "white"))
    elif kind == "border":
        b = _even(min(W, H) * rng.uniform(0.02, 0.06))
        g.append(f"color=c={bgc}:s={W}x{H}:r={FPS}[bg]")
        g.append(f"[0:v]{base},{cover.format(w=W - 2 * b, h=H - 2 * b)}[a]")
        g.append(f"[bg][a]overlay={b}:{b}:shortest=0[v0]")
        detail.update(border=b)
    elif kind == "pan":
        # a landscape clip panned slowly across a portrait canvas
        g.append(f"[0:v]{base},scale=-2:{H},crop={W}:{H}:x='(iw-{W})*t/{dur:g}':y=0,setsar=1[v0]")
    elif kind == "blur_fill":
        # the most common reframing of short video: the clip fitted into the canvas over a blurred
        # copy of itself scaled to cover it (a landscape clip on a portrait canvas, or a narrow
        # one on a landscape canvas), the copy sometimes darkened
        radius = max(4, int(min(W, H) * rng.choice([0.015, 0.03, 0.05])))
        dim = rng.choice([0.0, 0.0, -0.15])
        pre = "" if W < H else f"crop='min(iw,ih*{rng.choice([9 / 16, 3 / 4, 1.0]):.4f})':ih,"
        g.append(f"[0:v]{base},{pre}split[a][b]")
        g.append(f"[a]{cover.format(w=W, h=H)},boxblur={radius}:2,eq=brightness={dim}[bg]")
        g.append(f"[b]{contain.format(w=W, h=H)}[fg]")
        g.append("[bg][fg]overlay=(W-w)/2:(H-h)/2:shortest=0[v0]")
        detail.update(blur=radius, dim=dim)
    elif kind == "still":
        g.append(f"[0:v]trim=end_frame=1,loop=loop=-1:size=1,{base},{cover.format(w=W, h=H)}[v0]")
    else:
        raise ValueError(f"unknown kind {kind!r}")
    chain = ",".join(post) if post else "null"
    g.append(f"[v0]{chain},format=yuv420p[vout]")
    tmp = out.with_name("." + out.name + ".part.mp4")
    args = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *inputs,
            "-filter_complex", ";".join(g), "-map", "[vout]", "-t", f"{dur:g}", "-r", str(FPS),
            "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-threads", "2", "-an", str(tmp)]
    res = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{out}: ffmpeg failed: {res.stderr.strip()[-800:]}")
    os.replace(tmp, out)
    if font is None and kind in ("caption", "caption_letterbox", "logo", "text"):
        detail["note"] = "no font found: text drawn as text-like blocks"
    return detail


def _pick(rng: random.Random, clips: list[Clip], dur: float, want_landscape: bool | None = None,
          avoid: set[str] | None = None) -> tuple[Clip, float]:
    cands = [c for c in clips if not avoid or c.path not in avoid] or clips
    if want_landscape is not None:
        pref = [c for c in cands if (c.width > c.height) == want_landscape]
        cands = pref or cands
    c = rng.choice(cands)
    room = max(0.0, c.duration - dur - 0.2)
    return c, round(rng.uniform(0, room), 2) if room > 0 else 0.0


def source_of(path: str) -> str:
    """The source a clip came from: the part of its file name before ``__`` (shared/media names its
    clips ``<repository>__<name>``); the whole stem where there is none."""
    stem = Path(path).stem
    return stem.split("__", 1)[0] if "__" in stem else stem


def _one_source(rng: random.Random, clips: list[Clip], n: int) -> list[Clip]:
    """The clips of one source with at least n clips, drawn with probability by its clip count (all
    clips when no source has n)."""
    by: dict[str, list[Clip]] = {}
    for c in clips:
        by.setdefault(source_of(c.path), []).append(c)
    big = sorted(k for k, v in by.items() if len(v) >= n)
    if not big:
        return clips
    return by[rng.choices(big, weights=[len(by[k]) for k in big])[0]]


def plan_devset(media_dir: str | Path, pool: str = "dev", seed: int = 0, scale: float = 1.0,
                single_only: bool = False) -> list[dict]:
    """The concrete items (clips, offsets, parameters) for one pool, deterministic in seed.

    ``single_only`` keeps the single-feed templates only (numbered among themselves): a set of
    negatives, scaled up, measures the false-positive rate more tightly than the mixed set's 72.
    """
    clips = find_clips(media_dir, pool)
    if len(clips) < 4:
        raise RuntimeError(f"only {len(clips)} usable clips in pool {pool!r} under {media_dir}")
    rng = random.Random(f"layout-devset:{pool}:{seed}")
    items: list[dict] = []
    recipe = [t for t in RECIPE if t["label"] == "single_scene"] if single_only else RECIPE
    for ti, t in enumerate(recipe):
        for k in range(max(1, round(t["count"] * scale))):
            canvas = tuple(rng.choice(t["canvas"]))
            item = {"name": f"{ti:02d}_{t['kind']}_{t.get('layout', t['label'])}_{k:02d}",
                    "label": t["label"], "kind": t["kind"], "canvas": list(canvas),
                    "crf": rng.choice(CRFS), "pool": pool}
            if t["kind"] == "stack":
                layout = t["layout"]
                grid = tuple(rng.choice(t.get("grid", [(2, 2)])))
                n = grid[0] * grid[1] if layout == "grid" else rng.choice(t.get("n", [2]))
                used: set[str] = set()
                feeds = []
                pool_clips = _one_source(rng, clips, n) if t.get("same_source") else clips
                for _ in range(n):
                    c, off = _pick(rng, pool_clips, DURATION, avoid=used)
                    used.add(c.path)
                    feeds.append([c.path, off])
                item.update(layout=layout, feeds=feeds, grid=list(grid), fit=rng.choice(t.get("fit", ["cover"])),
                            gap=rng.choice(t.get("gap", [0])), gap_color=rng.choice(t.get("gap_color", ["black"])),
                            pip_scale=rng.choice(t.get("pip_scale", [0.33])),
                            pip_corner=rng.choice(["top-left", "top-right", "bottom-left", "bottom-right"]),
                            ext=rng.choice([".mp4"] * 5 + [".webm"]))
            else:
                n = 2 if t["kind"] == "uneven_vertical" else 1
                landscape = True if t["kind"] in ("letterbox", "pan", "caption_letterbox") else (
                    False if t["kind"] == "pillarbox" else None)
                if t["kind"] == "blur_fill":  # on a portrait canvas, a landscape clip (narrow ones are cropped)
                    landscape = True if canvas[0] < canvas[1] else None
                used = set()
                feeds = []
                for _ in range(n):
                    c, off = _pick(rng, clips, DURATION, want_landscape=landscape, avoid=used)
                    used.add(c.path)
                    feeds.append([c.path, off])
                item.update(feeds=feeds, sub_seed=rng.randrange(1 << 30))
            items.append(item)
    return items


def build_devset(out_dir: str | Path, media_dir: str | Path, pool: str = "dev", seed: int = 0,
                 scale: float = 1.0, log=print, single_only: bool = False) -> Path:
    """Build the pool's videos into ``out_dir`` with ``labels.csv`` and ``manifest.json``.

    Existing videos are kept (a rerun only builds what is missing). Returns labels.csv.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if font_file() is None:
        log("note: no DejaVu font found (Debian: fonts-dejavu-core); captions, logos and burned-in "
            "text are drawn as text-like blocks instead of text")
    items = plan_devset(media_dir, pool, seed, scale, single_only)
    clip_by_path = {c.path: c for c in find_clips(media_dir, pool)}
    rows = []
    for i, it in enumerate(items):
        ext = it.get("ext", ".mp4")
        out = out_dir / f"{it['name']}{ext}"
        it["path"] = out.name
        if not out.exists():
            if it["kind"] == "stack":
                make_composite(out, it["layout"], feeds=[f"{p}#t={o:g}" if o else p for p, o in it["feeds"]],
                               canvas=tuple(it["canvas"]), duration=DURATION, fps=FPS, audio=None,
                               seed=i, fit=it["fit"], gap=it["gap"], gap_color=it["gap_color"],
                               pip_corner=it["pip_corner"], pip_scale=it["pip_scale"],
                               grid=tuple(it["grid"]), crf=it["crf"])
            else:
                rng = random.Random(it["sub_seed"])
                it["detail"] = _custom(out, it["kind"], [(clip_by_path[p], o) for p, o in it["feeds"]],
                                       tuple(it["canvas"]), rng, it["crf"])
            log(f"[{i + 1}/{len(items)}] {out.name}")
        rows.append(it)
    labels = out_dir / "labels.csv"
    with open(labels, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "layout", "kind", "pool", "canvas", "crf", "feeds"])
        for it in rows:
            w.writerow([it["path"], it["label"], it["kind"], it["pool"], "x".join(map(str, it["canvas"])),
                        it["crf"], ";".join(Path(p).name for p, _ in it["feeds"])])
    (out_dir / "manifest.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return labels


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Build the layout development set (see ops/synthetic/devset.py).")
    ap.add_argument("out_dir")
    ap.add_argument("--media-dir", default=str(Path(__file__).resolve().parents[2].parent / "shared" / "media"))
    ap.add_argument("--pool", choices=["dev", "heldout"], default="dev")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every template's count")
    ap.add_argument("--single-only", action="store_true", help="single-feed templates only (negatives)")
    a = ap.parse_args(argv)
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg is not installed")
    labels = build_devset(a.out_dir, a.media_dir, a.pool, a.seed, a.scale, single_only=a.single_only)
    print(f"wrote {labels}")


if __name__ == "__main__":
    main()
