"""Image-text pairs from a generated set: each video's frames with a caption drawn from its recipe.

The recipe knows what the picture holds, so the caption says it: the layout (how many feeds and how
they sit), what each feed shows (a person on camera, game-like footage, a test card, a screen
recording), and the text burned in over it (captions, stickers, subtitles, watermarks). Phrasing is
drawn per video from several wordings ("split screen", "stacked", "one above the other"), so a
model learns the picture and not one sentence.

Feeds are described by kind, never by file name: a set built from the ``heldout`` pool of clips
(:func:`ops.synthetic.media.clip_pool`) then measures a model on footage it never saw, under words
it did.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from indexer.encoders.pairs import Pair

#: What a generated feed looks like, in words.
GENERATED_WORDS = {
    "testsrc2": "a test pattern",
    "mandelbrot": "a fractal zoom",
    "life": "a cellular automaton",
    "cellauto": "a cellular automaton",
    "gradients": "moving colour gradients",
    "smptehdbars": "test card colour bars",
    "boxes": "moving coloured boxes",
    "plasma": "a plasma animation",
    "gameplay": "side-scrolling gameplay",
    "solid": "a flat colour",
}
#: Real footage that is a film rather than a camera clip (by source repository and file stem).
FILM_STEMS = ("chaplin", "big_buck_bunny")
NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 9: "nine"}


def feed_words(source: dict) -> str:
    kind, ref = source.get("kind"), str(source.get("ref", ""))
    if kind == "gen":
        return GENERATED_WORDS.get(ref, "a generated animation")
    if kind == "screen":
        return "a screen recording"
    if kind == "slide":
        return "a text slide"
    if kind == "image":
        return "a still photo"
    if source.get("person"):
        return "a person talking to the camera"
    if any(s in Path(ref).stem for s in FILM_STEMS):
        return "a film clip"
    return "camera footage"


def _count(n: int) -> str:
    return NUMBERS.get(n, str(n))


def _where(rect: list[int], canvas: list[int]) -> str:
    """Where an inset sits, in the words a person would use (thirds of the canvas)."""
    x, y, w, h = rect
    cx, cy = (x + w / 2) / canvas[0], (y + h / 2) / canvas[1]
    row = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else "middle"
    col = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "centre"
    if row == "middle" and col == "centre":
        return "in the middle"
    if row == "middle":
        return f"on the {col}"
    if col == "centre":
        return f"at the {row}"
    return f"in the {row} {col}"


def _ordered(placements: list[dict], axis: int) -> list[dict]:
    return sorted((p for p in placements if p.get("fit") != "blur"), key=lambda p: p["rect"][axis])


def _join(words: list[str], last: str) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + f" {last} " + words[-1]


def layout_words(video: dict, rng: random.Random) -> str:
    label, canvas = video["label"], video["canvas"]
    feeds = [p for p in video["placements"] if p.get("fit") != "blur"]
    n = len(feeds)
    if label == "vertical":
        order = [feed_words(p["source"]) for p in _ordered(feeds, 1)]
        return rng.choice([f"split screen of {_count(n)} videos stacked: " + _join(order, "above"),
                           f"{_count(n)} feeds one above the other: " + _join(order, "over"),
                           "stacked split-screen video with " + _join(order, "and")])
    if label == "horizontal":
        order = [feed_words(p["source"]) for p in _ordered(feeds, 0)]
        return rng.choice([f"{_count(n)} videos side by side: " + _join(order, "beside"),
                           "side-by-side split screen of " + _join(order, "and"),
                           f"split screen, {_count(n)} feeds left to right: " + _join(order, "then")])
    if label == "grid":
        kinds = sorted({feed_words(p["source"]) for p in feeds})
        return rng.choice([f"a grid of {_count(n)} videos showing " + _join(kinds, "and"),
                           f"collage of {_count(n)} clips in a grid: " + _join(kinds, "and"),
                           f"{_count(n)}-panel video grid with " + _join(kinds, "and")])
    if label == "picture-in-picture":
        big = max(feeds, key=lambda p: p["rect"][2] * p["rect"][3])
        small = [p for p in feeds if p is not big]
        inner = _join([feed_words(p["source"]) for p in small], "and")
        where = _where(small[0]["rect"], canvas) if small else ""
        outer = feed_words(big["source"])
        return rng.choice([f"picture in picture: {inner} {where} over {outer}",
                           f"{outer} with a small inset of {inner} {where}",
                           f"{inner} overlaid {where} on top of {outer}"])
    feed = feed_words(feeds[0]["source"]) if feeds else "a video"
    family = video.get("family")
    extra = {"letterbox": " with bars around it", "blur_fill": " over a blurred copy of itself",
             "caption_canvas": " under a caption band", "zoom_pan": " with a slow zoom"}.get(family, "")
    return rng.choice([f"a single full-screen video of {feed}{extra}", f"one feed only: {feed}{extra}",
                       f"{feed}{extra}, a single video"])


def overlay_words(overlays: list[dict]) -> list[str]:
    out: list[str] = []
    for o in overlays:
        kind = o.get("kind")
        if kind == "caption" and o.get("text"):
            out.append(f'the caption "{o["text"]}"')
        elif kind == "subtitles":
            out.append("subtitles")
        elif kind == "sticker" and o.get("text"):
            out.append(f'a "{o["text"]}" sticker')
        elif kind == "watermark":
            out.append("a watermark")
        elif kind == "emoji":
            out.append("emoji")
        elif kind == "progress":
            out.append("a progress bar")
    return list(dict.fromkeys(out))


def caption(video: dict, seed: int = 0) -> str:
    """One caption for a generated video, drawn from its recipe (deterministic in the seed)."""
    rng = random.Random(f"pairs:{seed}:{video['name']}")
    text = layout_words(video, rng)
    over = overlay_words(video.get("overlays") or [])
    if over:
        text += ", with " + _join(over, "and")
    return text


def pairs_from_set(set_dir: str | Path, frames: int = 3, seed: int = 0, split: str | None = None) -> list[Pair]:
    """``frames`` pairs per video of a set built by ``sludge eval build-layout-set``, one caption each.

    Frames are spread over the video (each within its own slice, drawn from the seed). Each video is
    its own group, so its frames never land on both sides of a split.
    """
    set_dir = Path(set_dir)
    manifest = set_dir / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} does not exist: build the set with `sludge eval build-layout-set`")
    doc = json.loads(manifest.read_text(encoding="utf-8"))
    out: list[Pair] = []
    for video in doc.get("videos", []):
        path = set_dir / f"{video['name']}.mp4"
        if not path.is_file():
            continue
        rng = random.Random(f"pairs-frames:{seed}:{video['name']}")
        text = caption(video, seed)
        dur = float(video["duration"])
        group = f"{doc.get('pool')}:{set_dir.name}/{video['name']}"  # unique across sets
        policy = "stacked-feeds" if video["label"] != "single_scene" else None
        for k in range(frames):
            ts = round(dur * (k + rng.uniform(0.15, 0.85)) / frames, 3)
            out.append(Pair(text=text, video=str(path), ts=ts, split=split, group=group, policy=policy))
    return out
