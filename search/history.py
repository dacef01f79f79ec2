"""The frame history seam: every indexed frame, for recall over the past.

Backends store frames and per-video metadata and answer frame-level kNN and
transcript full-text search; grouping frames into videos, scores and snippets
are decided here once, for every backend.
"""

from __future__ import annotations

import abc
from collections import OrderedDict

import numpy as np

from indexer.errors import QueryError
from indexer.records import VideoRecord
from search.types import FrameHit, StoredVideo, TranscriptHit, VideoHit


class FrameHistory(abc.ABC):
    model_id: str | None
    dim: int | None

    @abc.abstractmethod
    def add_video(self, record: VideoRecord) -> bool:
        """Store a video and all its frames atomically. False when it was already there."""

    @abc.abstractmethod
    def has_video(self, video_id: str) -> bool: ...

    @abc.abstractmethod
    def get_videos(self, video_ids: list[str]) -> dict[str, StoredVideo]: ...

    @abc.abstractmethod
    def search_frames(
        self,
        vector: np.ndarray,
        k: int,
        *,
        since: float | None = None,
        until: float | None = None,
    ) -> list[FrameHit]:
        """The k frames most similar to ``vector`` (cosine), best first, within the time window."""

    @abc.abstractmethod
    def search_transcripts(
        self, query: str, limit: int, *, since: float | None = None, until: float | None = None
    ) -> list[TranscriptHit]: ...

    @abc.abstractmethod
    def stats(self) -> dict: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> "FrameHistory":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_video(self, video_id: str) -> StoredVideo | None:
        return self.get_videos([video_id]).get(video_id)

    def recall(
        self,
        vector: np.ndarray,
        *,
        limit: int = 20,
        min_score: float | None = None,
        since: float | None = None,
        until: float | None = None,
        frames_per_video: int = 8,
        snippet_chars: int = 160,
    ) -> list[VideoHit]:
        """Videos ranked by their best matching frame.

        Fetches ``limit * frames_per_video`` frames and widens the search until
        ``limit`` distinct videos are found or the history is exhausted, so a
        video with many similar frames cannot crowd the others out.
        """
        if limit < 1:
            raise QueryError("limit must be at least 1")
        k = limit * frames_per_video
        while True:
            hits = self.search_frames(vector, k, since=since, until=until)
            exhausted = len(hits) < k
            if min_score is not None:
                kept = [h for h in hits if h.score >= min_score]
                exhausted = exhausted or len(kept) < len(hits)  # ranked: the rest score lower
                hits = kept
            grouped: OrderedDict[str, list[FrameHit]] = OrderedDict()
            for h in hits:
                grouped.setdefault(h.video_id, []).append(h)
            if len(grouped) >= limit or exhausted:
                break
            k *= 4
        chosen = list(grouped.items())[:limit]
        videos = self.get_videos([vid for vid, _ in chosen])
        out = []
        for vid, frames in chosen:
            v = videos.get(vid)
            if v is None:  # removed between the two reads
                continue
            frames.sort(key=lambda h: -h.score)
            out.append(
                VideoHit(
                    video_id=vid,
                    path=v.path,
                    score=frames[0].score,
                    timestamps=[h.ts for h in frames],
                    frame_scores=[h.score for h in frames],
                    snippet=snippet(v.transcript, snippet_chars),
                    duration=v.duration,
                    uploaded_at=v.uploaded_at,
                    layout=v.layout,
                    source=v.source,
                )
            )
        return out


def snippet(text: str, chars: int) -> str:
    """The start of a transcript, cut at a word boundary."""
    text = " ".join((text or "").split())
    if len(text) <= chars:
        return text
    cut = text.rfind(" ", 0, chars)
    return text[: cut if cut > 0 else chars].rstrip() + "…"
