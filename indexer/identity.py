"""Content identity: a video is the SHA-256 of its bytes, a frame is (video, time).

Content addressing makes indexing idempotent: the same bytes under another
name are the same video, and re-running an index over a folder adds nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def text_sha256(text: str) -> str:
    """Identity of a text exemplar: whitespace-normalised, case kept."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


def frame_id(video_id: str, ts: float) -> str:
    """Frame ids sort by time within a video and survive re-indexing unchanged."""
    return f"{video_id}@{int(round(ts * 1000)):09d}"
