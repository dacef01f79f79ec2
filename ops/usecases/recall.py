"""Recall: a text or an image → past videos ranked by their best matching frames.

Assembled here once (query checks, embedding, the store's search with the configured grouping) for
``sludge recall``, ``sludge sweep``, ``POST /v1/recall`` and the console's Recall page.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

import numpy as np

from indexer.errors import QueryError
from search.history import FrameHistory, FrameSearch, HistoryFilter
from search.types import VideoHit

if TYPE_CHECKING:
    from ops.app import App


def check_text(text: str, max_chars: int, name: str = "query") -> str:
    """A query's text, refused when empty or longer than ``recall.max_query_chars`` (it is embedded whole)."""
    if not text.strip():
        raise QueryError(f"the {name} is empty")
    if len(text) > max_chars:
        raise QueryError(f"the {name} has {len(text)} characters; at most {max_chars} are allowed")
    return text


def embed_queries(app: App, texts: list[str] | None = None, images: list[np.ndarray] | None = None, *,
                  lock: AbstractContextManager | None = None) -> np.ndarray:
    """Query vectors, one per text (checked first) or per image, in the encoder's space.

    ``lock``: servers share one encoder between request threads and call it one at a time.
    """
    if (texts is None) == (images is None):
        raise QueryError("give texts or images to embed, not both")
    if texts is not None:
        for text in texts:
            check_text(text, app.settings.recall.max_query_chars)
    with lock or nullcontext():
        return app.encoder.embed_texts(texts) if texts is not None else app.encoder.embed_images(images)


def recall_videos(app: App, vector: np.ndarray, *, history: FrameHistory | None = None,
           where: HistoryFilter | None = None, limit: int | None = None, min_score: float | None = None,
           transcript: str | None = None, k: int | None = None, num_candidates: int | None = None,
           search: FrameSearch | None = None) -> list[VideoHit]:
    """Videos ranked by their best frame against ``vector``, grouped and trimmed as ``recall.*`` says.

    ``history``: the store to search (servers keep one open); the application's own otherwise.
    """
    rs = app.settings.recall
    history = history if history is not None else app.history()
    return history.recall(vector, limit=limit or rs.limit, min_score=min_score, where=where,
                          transcript=transcript, frames_per_video=rs.frames_per_video,
                          snippet_chars=rs.snippet_chars, num_candidates=num_candidates, k=k, search=search)


def frame_vector(history: FrameHistory, video_id: str, ts: float) -> tuple[float, np.ndarray]:
    """The stored embedding of a video's frame nearest ``ts`` ("search with this frame"): no model call,
    and exactly the vector the history compares against. Returns (that frame's time, its vector)."""
    best: tuple[float, np.ndarray] | None = None
    for page in history.export_frames(HistoryFilter(video_ids=(video_id,))):
        if not len(page.frame_ids):
            continue
        i = int(np.argmin(np.abs(page.ts - ts)))
        if best is None or abs(page.ts[i] - ts) < abs(best[0] - ts):
            best = (float(page.ts[i]), page.vectors[i])
    if best is None:
        raise QueryError(f"video {video_id[:12]} has no stored frames to search with")
    return best
