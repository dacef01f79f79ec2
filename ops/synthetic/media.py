"""Real media for the synthetic sets: which clips there are, which pool each belongs to, where it came from.

Clips are split by file into two pools, **dev** and **heldout**, by a hash of the file name
(:func:`clip_pool`), so a detector developed on ``dev`` can be judged on composites of clips it has
never seen. Nothing here ships media: clips are read from ``../shared/media``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
)
VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".avi"}
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


def source_of(path: str) -> str:
    """The source a clip came from: the part of its file name before ``__`` (shared/media names its
    clips ``<repository>__<name>``); the whole stem where there is none."""
    stem = Path(path).stem
    return stem.split("__", 1)[0] if "__" in stem else stem
