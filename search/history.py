"""The frame history seam: every indexed frame, for recall over the past.

Backends store frames and per-video metadata and answer frame-level kNN,
transcript full-text search, exact threshold scans (for policy sweeps) and
keep sweep records; grouping frames into videos, scores, snippets, hybrid
narrowing and candidate merging are decided here once, for every backend.
"""

from __future__ import annotations

import abc
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from indexer.errors import QueryError
from indexer.records import VideoRecord
from search.types import FrameHit, StoredVideo, TranscriptHit, VideoHit

#: Decision filter value matching videos with no decision yet.
NO_DECISION = "none"
#: Most transcript matches a hybrid recall narrows to.
HYBRID_MAX_VIDEOS = 10_000
#: Frames of evidence kept per sweep candidate.
CANDIDATE_MAX_FRAMES = 32
#: The range of times a filter may name (epoch seconds): 1970 to the end of year 9999. Every backend
#: stores times as epoch milliseconds in 64 bits, and Python's datetime stops at year 9999.
EARLIEST_TIME = 0.0
LATEST_TIME = 253402300799.0


@dataclass(frozen=True)
class HistoryFilter:
    """Pre-filters applied inside the nearest-neighbour search (not after it).

    Each list is "any of"; an empty list means no constraint. ``decisions`` may
    hold :data:`NO_DECISION` for videos without a decision. ``video_ids`` (None:
    no constraint) is how a transcript match narrows a vector search.
    """

    since: float | None = None  # uploaded_at >= since (epoch seconds)
    until: float | None = None  # uploaded_at < until
    layouts: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    decisions: tuple[str, ...] = ()
    video_ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            t = getattr(self, name)
            if t is None:
                continue
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) \
                    or not EARLIEST_TIME <= t <= LATEST_TIME:
                raise QueryError(f"`{name}` must be a time in epoch seconds between {EARLIEST_TIME:.0f} "
                                 f"(1970) and {LATEST_TIME:.0f} (year 9999); got {t!r}")

    @classmethod
    def of(cls, where: HistoryFilter | None = None, *, since: float | None = None,
           until: float | None = None) -> HistoryFilter:
        w = where or cls()
        if since is not None:
            w = replace(w, since=since if w.since is None else max(since, w.since))
        if until is not None:
            w = replace(w, until=until if w.until is None else min(until, w.until))
        return w

    def is_empty(self) -> bool:
        return self == HistoryFilter()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FramePage:
    """A page of exported frames: ids, times and embeddings (row i of ``vectors`` is frame i)."""

    frame_ids: list[str]
    video_ids: list[str]
    ts: np.ndarray  # float64 (n,)
    vectors: np.ndarray  # float32 (n, dim), unit rows

    def __len__(self) -> int:
        return len(self.frame_ids)


#: ``search_frames``' signature: what :meth:`FrameHistory.recall` asks for frames (another engine may answer).
FrameSearch = Callable[..., "list[FrameHit]"]


@dataclass
class SweepCandidate:
    """A video a policy sweep found: the evidence the confirm stage consumes."""

    policy: str
    video_id: str
    path: str
    score: float  # best frame, cosine
    timestamps: list[float]  # matching frames, best first
    frame_scores: list[float]
    snippet: str = ""
    query: str = ""
    run_id: str = ""
    found_at: float = 0.0
    updated_at: float = 0.0
    layout: str | None = None
    source: str | None = None
    uploaded_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepCandidate:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


def merge_candidate(old: SweepCandidate | None, new: SweepCandidate) -> SweepCandidate:
    """One candidate per (policy, video): the union of frame evidence, the best score, the first sighting."""
    if old is None:
        return new
    frames = dict(zip(old.timestamps, old.frame_scores))
    for ts, sc in zip(new.timestamps, new.frame_scores):
        frames[ts] = max(sc, frames.get(ts, -2.0))
    best = sorted(frames.items(), key=lambda kv: (-kv[1], kv[0]))[:CANDIDATE_MAX_FRAMES]
    return replace(
        new,
        score=best[0][1],
        timestamps=[t for t, _ in best],
        frame_scores=[s for _, s in best],
        found_at=old.found_at or new.found_at,
        run_id=old.run_id or new.run_id,
    )


class FrameHistory(abc.ABC):
    model_id: str | None
    dim: int | None

    @abc.abstractmethod
    def add_video(self, record: VideoRecord) -> bool:
        """Store a video and all its frames. False when it was already there.

        A server backend that cannot write right now keeps the video in a local
        outbox (see :meth:`pending`) and returns True: nothing accepted is lost.
        """

    def add_videos(self, records: Iterable[VideoRecord]) -> list[bool]:
        """Store many videos; backends override this to batch the writes."""
        return [self.add_video(r) for r in records]

    @abc.abstractmethod
    def has_video(self, video_id: str) -> bool: ...

    @abc.abstractmethod
    def get_videos(self, video_ids: list[str]) -> dict[str, StoredVideo]: ...

    @abc.abstractmethod
    def set_decision(self, video_id: str, decision: str | None) -> None:
        """Record the latest moderation decision of a video (on the video and all its frames)."""

    @abc.abstractmethod
    def search_frames(
        self,
        vector: np.ndarray,
        k: int,
        *,
        since: float | None = None,
        until: float | None = None,
        where: HistoryFilter | None = None,
        num_candidates: int | None = None,
    ) -> list[FrameHit]:
        """The k frames most similar to ``vector`` (cosine), best first, among those ``where`` allows.

        ``num_candidates``: for approximate backends, candidates examined per
        shard (more is slower and closer to exact); exact backends ignore it.
        """

    @abc.abstractmethod
    def search_transcripts(
        self, query: str, limit: int, *, since: float | None = None, until: float | None = None,
        where: HistoryFilter | None = None,
    ) -> list[TranscriptHit]:
        """Videos whose transcript holds every word of ``query``, most relevant first."""

    @abc.abstractmethod
    def scan_frames(
        self,
        vector: np.ndarray,
        *,
        min_score: float,
        where: HistoryFilter | None = None,
        cursor: Any = None,
        page_size: int = 500,
    ) -> Iterator[tuple[list[FrameHit], Any]]:
        """Every frame scoring at least ``min_score``, exactly (no approximation), in pages.

        Ordered by score descending then frame id; each page comes with an
        opaque, JSON-serialisable cursor that resumes the scan after it (also
        in a later process). Server backends read from one point in time.
        """

    def export_frames(self, where: HistoryFilter | None = None, *, page_size: int = 10_000) -> Iterator[FramePage]:
        """Every frame ``where`` allows, with its embedding, in pages (for offline engines: faiss).

        Each frame once (server backends drop a frame seen twice across a rollover).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot export its embeddings")
        yield  # pragma: no cover - a generator

    # -- generations (sludge migrate) ---------------------------------------------------
    @abc.abstractmethod
    def export_videos(self, after: str | None, limit: int, *,
                      with_embeddings: bool = True) -> list[tuple[VideoRecord, str | None]]:
        """Whole videos after video id ``after``, in video id order, each with its decision.

        A migration copies a generation with this and resumes after the last video it copied;
        frames come in time order (without embeddings: zero vectors of the stored dimension).
        """

    @abc.abstractmethod
    def sweep_records(self) -> tuple[dict[str, dict], list[SweepCandidate]]:
        """Every sweep's saved state by run id, and every candidate (copied to a new generation)."""

    @abc.abstractmethod
    def drop(self) -> None:
        """Delete this generation's data for good (``sludge migrate --finish``); the store is closed."""

    # -- sweep records -------------------------------------------------------------
    @abc.abstractmethod
    def sweep_state(self, run_id: str) -> dict | None: ...

    @abc.abstractmethod
    def save_sweep_state(self, run_id: str, state: dict) -> None: ...

    @abc.abstractmethod
    def upsert_candidates(self, candidates: list[SweepCandidate]) -> int:
        """Merge candidates into the sweep records (one per policy and video); returns how many are new."""

    @abc.abstractmethod
    def sweep_candidates(self, policy: str, *, limit: int | None = None) -> list[SweepCandidate]:
        """A policy's candidates, best first."""

    @abc.abstractmethod
    def stats(self) -> dict: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    # -- outbox (server backends) ----------------------------------------------------
    def pending(self) -> int:
        """Videos accepted but not yet written to the server (kept in a local outbox)."""
        return 0

    def flush_pending(self) -> int:
        """Write what the outbox holds; returns the number of videos written."""
        return 0

    def refresh(self) -> None:
        """Make every write so far visible to searches (no-op where writes are visible at once)."""

    def __enter__(self) -> FrameHistory:
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
        where: HistoryFilter | None = None,
        transcript: str | None = None,
        num_candidates: int | None = None,
        k: int | None = None,
        search: FrameSearch | None = None,
    ) -> list[VideoHit]:
        """Videos ranked by their best matching frame.

        Fetches ``limit * frames_per_video`` frames (or ``k``) and widens the
        search until ``limit`` distinct videos are found or the history is
        exhausted, so a video with many similar frames cannot crowd the others
        out. ``transcript`` (hybrid): only videos whose transcript holds every
        word are searched, as a pre-filter inside the vector search.
        ``search``: another engine answering the frame searches, with
        :meth:`search_frames`' signature (e.g. :class:`search.faiss_engine.FaissEngine`);
        grouping, transcripts and video metadata still come from this history.
        """
        if limit < 1:
            raise QueryError("limit must be at least 1")
        where = HistoryFilter.of(where, since=since, until=until)
        if transcript is not None:
            matched = self.search_transcripts(transcript, HYBRID_MAX_VIDEOS, where=where)
            ids = [h.video_id for h in matched]
            if where.video_ids is not None:
                keep = set(where.video_ids)
                ids = [v for v in ids if v in keep]
            if not ids:
                return []
            where = replace(where, video_ids=tuple(ids))
        k = k or limit * frames_per_video
        search = search or self.search_frames
        while True:
            hits = search(vector, k, where=where, num_candidates=num_candidates)
            exhausted = len(hits) < k
            if min_score is not None:
                kept = [h for h in hits if h.score >= min_score]
                exhausted = exhausted or len(kept) < len(hits)  # ranked: the rest score lower
                hits = kept
            grouped: OrderedDict[str, list[FrameHit]] = OrderedDict()
            for h in hits:
                if h.frame_id in {x.frame_id for x in grouped.get(h.video_id, [])}:
                    continue  # the same frame twice (re-indexed across a rollover)
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


def candidates_from_hits(policy: str, hits: list[FrameHit], videos: dict[str, StoredVideo], *, query: str,
                         run_id: str, snippet_chars: int = 160) -> list[SweepCandidate]:
    """One candidate per video from a page of scanned frames."""
    grouped: OrderedDict[str, list[FrameHit]] = OrderedDict()
    for h in hits:
        grouped.setdefault(h.video_id, []).append(h)
    now = time.time()
    out = []
    for vid, frames in grouped.items():
        v = videos.get(vid)
        if v is None:
            continue
        frames.sort(key=lambda h: (-h.score, h.ts))
        frames = frames[:CANDIDATE_MAX_FRAMES]
        out.append(SweepCandidate(
            policy=policy, video_id=vid, path=v.path, score=frames[0].score,
            timestamps=[h.ts for h in frames], frame_scores=[h.score for h in frames],
            snippet=snippet(v.transcript, snippet_chars), query=query, run_id=run_id, found_at=now,
            updated_at=now, layout=v.layout, source=v.source, uploaded_at=v.uploaded_at,
        ))
    return out


def snippet(text: str, chars: int) -> str:
    """The start of a transcript, cut at a word boundary."""
    text = " ".join((text or "").split())
    if len(text) <= chars:
        return text
    cut = text.rfind(" ", 0, chars)
    return text[: cut if cut > 0 else chars].rstrip() + "…"
