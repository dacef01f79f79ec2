"""Screening one video against the bank, and (optionally) the cascade's confirm stage.

One place for what ``sludge check`` and the hooks workers both do with a video: the first stage
(:meth:`indexer.pipeline.VideoIndexer.analyse`: sampled frames with the layout, embeddings, PDQ
hashes; the workers index the video too, which runs the same stage), then every registered signal
(:mod:`search.signals`: embedding KNN and PDQ near-duplicates against the bank, the layout's
observation), one verdict per policy, then one decision record (:class:`indexer.decision.Decision`). Without a cascade
the decision is the prefilter's (any policy candidate → flagged); with it the cascade decides,
sending uncertain videos to Visual-Qwen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer.decision import Decision, FrameMatch, PolicyVerdict, prefilter_decision
from indexer.pipeline import Analysed
from indexer.records import VideoRecord
from search.bank import ExemplarBank
from search.signals import VideoEvidence, match_frames, observe_video
from search.verdict import decide

if TYPE_CHECKING:
    from ops.app import App


def match_bank(bank: ExemplarBank, video: VideoEvidence, k: int) -> list[PolicyVerdict]:
    """Per-policy verdicts from every registered signal (search.signals) over a video's sampled frames."""
    return decide(bank.list_policies(), match_frames(bank, video, k))


def screen(bank: ExemplarBank, video: VideoEvidence, *, k: int, cascade: Any = None, transcript: Any = None,
           stage_one_seconds: float = 0.0) -> Decision:
    """Match, then decide: the prefilter alone, or the cascade (reading every signal's observations too)."""
    t = time.perf_counter()
    verdicts = match_bank(bank, video, k)
    match_s = time.perf_counter() - t
    if cascade is None:
        return prefilter_decision(verdicts, path=video.path or "", seconds={"match": round(match_s, 4)})
    from classifier.cascade import CascadeInput

    [d] = cascade.decide_many([CascadeInput(video.path or "", verdicts, transcript=transcript,
                                            stage_one_seconds=stage_one_seconds + match_s,
                                            observations=observe_video(video))])
    d.seconds = {"match": round(match_s, 4), **d.cost.get("seconds", {})}
    return d


def layout_of(rec: VideoRecord) -> dict[str, Any] | None:
    """An indexed video's layout as decisions carry it: the class and the detector's detail."""
    return {"layout": rec.layout, **(rec.layout_detail or {})} if rec.layout is not None else None


def record_evidence(rec: VideoRecord, path: str) -> VideoEvidence:
    """What screening reads of a video that was just indexed (the workers: upload → index → decide)."""
    return VideoEvidence([f.ts for f in rec.frames],
                         rec.embeddings if rec.frames else np.zeros((0, 0), np.float32),
                         [(f.pdq, f.pdq_quality) if f.pdq else None for f in rec.frames], path,
                         layout=layout_of(rec))


def stored_matches(history: Any, bank: ExemplarBank, video_id: str, *, k: int = 3,
                   limit: int = 12) -> list[tuple[str, FrameMatch]]:
    """(policy, match) for a video already in the history but never decided (indexed from the command
    line): each stored frame's best match through every signal, best first. Empty when the history
    cannot export its vectors."""
    export = getattr(history, "export_frames", None)
    if export is None:
        return []
    from search.history import HistoryFilter

    found: list[tuple[str, FrameMatch]] = []
    for page in export(HistoryFilter(video_ids=(video_id,))):
        if not len(page.frame_ids):
            continue
        video = VideoEvidence([float(t) for t in page.ts], page.vectors, [None] * len(page.frame_ids))
        for ts, ms in match_frames(bank, video, k):
            if ms:
                m = max(ms, key=lambda m: m.score)
                found.append((m.policy, FrameMatch(ts, m.exemplar_id, m.kind, m.source, m.score, m.signal)))
    return sorted(found, key=lambda p: -p[1].score)[:limit]


@dataclass
class Checked:
    """``sludge check``'s outcome: the first stage, the verdicts and, with the cascade, its decision."""

    path: str
    analysed: Analysed
    verdicts: list[PolicyVerdict]
    decision: Decision | None  # with the cascade
    model_id: str
    random_weights: bool
    seconds: float


def check_video(app: App, path: str, *, sampler: str | None = None, k: int | None = None,
                confirm: bool = False) -> Checked:
    """Screen one file without indexing it: first stage, bank match, and the cascade when ``confirm``."""
    t0 = time.perf_counter()
    indexer = app.indexer(sampler, transcribe=False)  # the encoder loads once the file has decoded
    a = indexer.analyse(path)
    bank = app.bank()
    kk = k or app.settings.bank.k
    video = VideoEvidence(a.times, a.embeddings, a.pdq, path, layout=a.sampled.layout)
    decision: Decision | None = None
    if confirm:
        decision = screen(bank, video, k=kk, cascade=app.cascade,
                          stage_one_seconds=sum(a.timings.values()))  # the stage, not the model's loading
        verdicts = decision.policies
    else:
        verdicts = match_bank(bank, video, kk)
    return Checked(path, a, verdicts, decision, app.encoder.model_id, app.encoder.random_weights,
                   seconds=round(time.perf_counter() - t0, 3))


def file_evidence(app: App, path: Path, *, sampler: str | None = None) -> VideoEvidence:
    """An image (one frame) or a video's sampled frames, embedded and PDQ-hashed, without the layout:
    what scoring a file against a policy needs (``sludge bank calibrate``)."""
    from indexer.pdq import pdq_hash
    from search.exemplars import IMAGE_EXTENSIONS, read_image

    if Path(path).suffix.lower() in IMAGE_EXTENSIONS:
        image = read_image(path)
        return VideoEvidence([0.0], app.encoder.embed_images([image]), [pdq_hash(image)], str(path))
    a = app.indexer(sampler, transcribe=False, layout=False).analyse(path)
    return VideoEvidence(a.times, a.embeddings, a.pdq, str(path))
