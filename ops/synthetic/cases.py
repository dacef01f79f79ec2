"""Hand-made compositions for the layout detector's regression tests: one ffmpeg graph per kind.

Each kind is a case that once fooled the detector (a caption band, a letterbox, blur fill, a logo,
burned-in text, a border, a pan, a still, two feeds of uneven height); the tests compose it around a
given clip and check the answer. Sets for training and evaluation come from the randomized generator
(:mod:`ops.synthetic.randomized`), not from here.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

from ops.synthetic.composite import _even, _monotonic_setpts
from ops.synthetic.media import Clip, font_file

DURATION = 4.0
FPS = 25


def _feed_input(clip: Clip, offset: float, duration: float) -> list[str]:
    args = []
    if offset + duration > clip.duration - 0.1:
        args += ["-stream_loop", "-1"]
    if offset > 0:
        args += ["-ss", f"{offset:.2f}"]
    return args + ["-i", clip.path]


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


def compose_case(out: Path, kind: str, clips: list[tuple[Clip, float]], canvas: tuple[int, int],
            rng: random.Random, crf: int) -> dict:
    """Compose one case around ``clips`` into ``out`` (mp4); returns what was drawn."""
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
