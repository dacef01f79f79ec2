"""The data that leaves the indexer: one record per video, one per sampled frame.

Plain dataclasses so that every store can serialise them its own way; the
embedding stays a NumPy array (float32, L2-normalised) until a store writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Frame:
    """A decoded frame: presentation time in seconds and an RGB image (H, W, 3, uint8)."""

    ts: float
    image: np.ndarray


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    """What was said in a video's audio.

    ``has_speech`` is False for a video without an audio stream or with only
    silence; ``text`` is then empty. That is a normal outcome, not an error.
    """

    text: str = ""
    language: str | None = None
    language_probability: float | None = None
    segments: tuple[Segment, ...] = ()
    has_speech: bool = False
    audio_duration: float = 0.0
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "language": self.language,
            "language_probability": self.language_probability,
            "has_speech": self.has_speech,
            "audio_duration": self.audio_duration,
            "model": self.model,
            "segments": [
                {"start": s.start, "end": s.end, "text": s.text} for s in self.segments
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Transcript":
        return cls(
            text=d.get("text", ""),
            language=d.get("language"),
            language_probability=d.get("language_probability"),
            has_speech=bool(d.get("has_speech", False)),
            audio_duration=float(d.get("audio_duration", 0.0)),
            model=d.get("model"),
            segments=tuple(
                Segment(float(s["start"]), float(s["end"]), s["text"])
                for s in d.get("segments", [])
            ),
        )


EMPTY_TRANSCRIPT = Transcript()


@dataclass
class FrameRecord:
    frame_id: str
    video_id: str
    ts: float
    embedding: np.ndarray  # float32 (dim,), L2-normalised
    pdq: str | None = None  # 64 hex characters (256 bits)
    pdq_quality: int | None = None


@dataclass
class VideoRecord:
    video_id: str  # SHA-256 of the file's bytes, hex
    path: str
    size_bytes: int
    duration: float
    width: int
    height: int
    fps: float | None
    has_audio: bool
    transcript: Transcript
    sampler: str
    model_id: str
    frames: list[FrameRecord] = field(default_factory=list)
    source: str | None = None  # channel or upload source, when known
    uploaded_at: float | None = None
    indexed_at: float | None = None
    layout: str | None = None
    layout_detail: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    warnings: list[str] = field(default_factory=list)  # trouble that did not stop indexing

    @property
    def embeddings(self) -> np.ndarray:
        return np.stack([f.embedding for f in self.frames]).astype(np.float32)
