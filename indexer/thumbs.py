"""Small JPEG thumbnails of sampled frames, written at index time next to the store.

Reviewers judge frames by eye; decoding the video again for every page view
would cost a decode per thumbnail, so each sampled frame is saved once, small
(longest side ``max_side``), under ``root/<id[:2]>/<id>/<ms>.jpg`` where
``<ms>`` is the frame's time in milliseconds (as in its frame id). Writes are
atomic; a video indexed again rewrites the same files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image

from indexer.records import Frame

VIDEO_ID = re.compile(r"^[0-9a-f]{64}$")
THUMB_NAME = re.compile(r"^(\d{1,10})\.jpg$")


def video_dir(root: Path, video_id: str) -> Path:
    if not VIDEO_ID.match(video_id):
        raise ValueError(f"{video_id!r} is not a video id (SHA-256 hex)")
    return root / video_id[:2] / video_id


def thumb_name(ts: float) -> str:
    return f"{int(round(ts * 1000))}.jpg"


def make_thumbnail(image: np.ndarray, max_side: int = 320) -> Image.Image:
    im = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return im


def save_jpeg(im: Image.Image, dest: Path, quality: int = 80) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    im.convert("RGB").save(tmp, "JPEG", quality=quality, optimize=True)
    os.replace(tmp, dest)


def write_thumbnails(root: Path, video_id: str, frames: list[Frame], *, max_side: int = 320,
                     quality: int = 80) -> list[Path]:
    d = video_dir(root, video_id)
    out = []
    for f in frames:
        p = d / thumb_name(f.ts)
        save_jpeg(make_thumbnail(f.image, max_side), p, quality)
        out.append(p)
    return out


def list_thumbnails(root: Path, video_id: str) -> list[tuple[float, str]]:
    """(time in seconds, file name) of a video's thumbnails, in time order."""
    d = video_dir(root, video_id)
    if not d.is_dir():
        return []
    got = [(int(m.group(1)) / 1000.0, p.name) for p in d.iterdir() if (m := THUMB_NAME.match(p.name))]
    return sorted(got)


def thumbnail_file(root: Path, video_id: str, name: str) -> Path | None:
    """The file for a thumbnail URL's parts, or None: strict names, and never outside ``root``."""
    if not VIDEO_ID.match(video_id) or not THUMB_NAME.match(name):
        return None
    p = (video_dir(root, video_id) / name).resolve()
    if not p.is_relative_to(root.resolve()) or not p.is_file():
        return None
    return p
