"""Policy re-sweeps: every past frame scored against a policy's query, candidates recorded.

A sweep is an exact threshold scan (:meth:`FrameHistory.scan_frames`) over the
whole history (or a filtered part), page by page. After each page its
candidates (one per video, with the matching frames as evidence) are merged
into the sweep records and the scan's cursor is saved, so an interrupted sweep
resumes where it stopped, and running it again adds nothing twice: candidates
are keyed by (policy, video).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from indexer.errors import QueryError
from search.history import FrameHistory, HistoryFilter, candidates_from_hits


@dataclass
class SweepResult:
    policy: str
    run_id: str
    resumed: bool
    frames_matched: int
    pages: int
    candidates_new: int
    candidates_seen: int
    complete: bool
    seconds: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def sweep_run_id(policy: str, query: str, model_id: str | None, min_score: float, where: HistoryFilter) -> str:
    key = json.dumps({"policy": policy, "query": query, "model": model_id, "min_score": round(min_score, 6),
                      "where": where.to_dict()}, sort_keys=True, default=list)
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def run_sweep(
    history: FrameHistory,
    policy: str,
    vector: np.ndarray,
    *,
    query: str,
    min_score: float,
    where: HistoryFilter | None = None,
    page_size: int = 500,
    max_pages: int | None = None,
    on_page: Callable[[int, int, int], None] | None = None,
    snippet_chars: int = 160,
) -> SweepResult:
    """Run (or resume) the sweep of ``policy``; ``max_pages`` stops early (the next run resumes).

    ``on_page(pages, frames_matched, candidates_new)`` is called after each page is recorded.
    """
    if not -1.0 <= min_score <= 1.0:
        raise QueryError(f"min score {min_score} is not a cosine in [-1, 1]")
    where = where or HistoryFilter()
    run_id = sweep_run_id(policy, query, history.model_id, min_score, where)
    t0 = time.perf_counter()
    state = history.sweep_state(run_id)
    resumed = bool(state and state.get("status") == "running")
    if not resumed:  # first run, or a re-run of a finished sweep: scan from the top again
        state = {"run_id": run_id, "policy": policy, "query": query, "min_score": min_score,
                 "where": where.to_dict(), "model_id": history.model_id, "cursor": None, "pages": 0,
                 "frames_matched": 0, "candidates_new": 0, "status": "running", "started_at": time.time()}
        history.save_sweep_state(run_id, state)
    pages = new = frames = 0
    seen: set[str] = set()
    complete = True
    for hits, cursor in history.scan_frames(vector, min_score=min_score, where=where, cursor=state["cursor"],
                                            page_size=page_size):
        videos = history.get_videos(sorted({h.video_id for h in hits}))
        cands = candidates_from_hits(policy, hits, videos, query=query, run_id=run_id,
                                     snippet_chars=snippet_chars)
        added = history.upsert_candidates(cands)
        seen.update(c.video_id for c in cands)
        pages += 1
        new += added
        frames += len(hits)
        state.update(cursor=cursor, pages=state["pages"] + 1, frames_matched=state["frames_matched"] + len(hits),
                     candidates_new=state["candidates_new"] + added, updated_at=time.time())
        history.save_sweep_state(run_id, state)
        if on_page is not None:
            on_page(pages, frames, new)
        if max_pages is not None and pages >= max_pages:
            complete = False
            break
    if complete:
        state.update(status="done", finished_at=time.time())
        history.save_sweep_state(run_id, state)
    return SweepResult(policy=policy, run_id=run_id, resumed=resumed, frames_matched=frames, pages=pages,
                       candidates_new=new, candidates_seen=len(seen), complete=complete,
                       seconds=time.perf_counter() - t0)
