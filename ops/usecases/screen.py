"""Screening one video against the bank, and (optionally) the cascade's confirm stage.

One place for what ``sludge check`` and the hooks workers both do with a video: the first stage
(:meth:`indexer.pipeline.VideoIndexer.analyse`: sampled frames with the layout, embeddings, PDQ
hashes; the workers index the video too, which runs the same stage), then embedding KNN + PDQ
near-duplicates against the bank, one verdict per policy, then a video decision. Without a cascade
the decision is the prefilter's (any policy candidate → flagged); with it the cascade decides,
sending uncertain videos to Visual-Qwen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer.pipeline import Analysed
from indexer.records import VideoRecord
from search.bank import ExemplarBank
from search.signals import VideoEvidence, match_frames
from search.verdict import PolicyVerdict, decide

if TYPE_CHECKING:
    from ops.app import App

# The cascade's verdicts as the decisions the platform receives.
DECISION_OF_VERDICT = {"sludge": "flagged", "clear": "cleared", "review": "review"}


@dataclass
class Screening:
    decision: str  # flagged | cleared | review
    reason: str
    policies: list[PolicyVerdict]
    stage: int = 1
    confirm: dict[str, Any] | None = None  # stage two's votes when the cascade ran it
    cascade: dict[str, Any] | None = None  # the cascade's evidence and cost
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def matched_policies(self) -> list[str]:
        return [v.policy for v in self.policies if v.verdict == "candidate"]

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "reason": self.reason, "stage": self.stage,
                "policies": [v.to_dict() for v in self.policies], "confirm": self.confirm,
                "cascade": self.cascade, "seconds": self.seconds}


def match_bank(bank: ExemplarBank, times: list[float], vectors: np.ndarray,
               pdq: list[tuple[str, int] | None], k: int) -> list[PolicyVerdict]:
    """Per-policy verdicts from every registered signal (search.signals) over a video's sampled frames."""
    return decide(bank.list_policies(), match_frames(bank, VideoEvidence(list(times), vectors, pdq), k))


def prefilter_decision(verdicts: list[PolicyVerdict]) -> tuple[str, str]:
    hits = [v for v in verdicts if v.verdict == "candidate"]
    if not hits:
        return "cleared", "no policy reached its threshold"
    best = max(hits, key=lambda v: v.score if v.score is not None else -2.0)
    names = ", ".join(v.policy for v in hits)
    return "flagged", f"bank: {names} (best {best.policy} {best.score:.3f} ≥ {best.threshold:g})"


def screen(bank: ExemplarBank, path: str, times: list[float], vectors: np.ndarray,
           pdq: list[tuple[str, int] | None], *, k: int, cascade: Any = None, layout: Any = None,
           transcript: Any = None, stage_one_seconds: float = 0.0) -> Screening:
    """Match, then decide: the prefilter alone, or the cascade when one is given."""
    t = time.perf_counter()
    verdicts = match_bank(bank, times, vectors, pdq, k)
    match_s = time.perf_counter() - t
    if cascade is None:
        decision, reason = prefilter_decision(verdicts)
        return Screening(decision, reason, verdicts, seconds={"match": round(match_s, 4)})
    d = cascade.decide(path, verdicts, layout=layout, transcript=transcript,
                       stage_one_seconds=stage_one_seconds + match_s)
    return Screening(DECISION_OF_VERDICT[d.verdict], d.reason, verdicts, stage=d.stage, confirm=d.confirm,
                     cascade={"evidence": d.evidence, "cost": d.cost},
                     seconds={"match": round(match_s, 4), **d.cost.get("seconds", {})})


def layout_of(rec: VideoRecord) -> dict[str, Any] | None:
    """An indexed video's layout as decisions carry it: the class and the detector's detail."""
    return {"layout": rec.layout, **(rec.layout_detail or {})} if rec.layout is not None else None


def screen_record(bank: ExemplarBank, rec: VideoRecord, path: str, *, k: int, cascade: Any = None) -> Screening:
    """Screen a video that was just indexed, from its record (the workers: upload → index → decide)."""
    times = [f.ts for f in rec.frames]
    vectors = rec.embeddings if rec.frames else np.zeros((0, 0), np.float32)
    pdq = [(f.pdq, f.pdq_quality) if f.pdq else None for f in rec.frames]
    return screen(bank, path, times, vectors, pdq, k=k, cascade=cascade, layout=layout_of(rec),
                  transcript=rec.transcript)


@dataclass
class Checked:
    """``sludge check``'s outcome: the first stage, the verdicts and, with the cascade, its decision."""

    path: str
    analysed: Analysed
    verdicts: list[PolicyVerdict]
    screening: Screening | None
    model_id: str
    random_weights: bool
    seconds: float


def check_video(app: App, path: str, *, sampler: str | None = None, k: int | None = None,
                confirm: bool = False) -> Checked:
    """Screen one file without indexing it: first stage, bank match, and the cascade when ``confirm``."""
    t0 = time.perf_counter()
    indexer = app.indexer(sampler, transcribe=False)  # loads the encoder: not what stage one costs per video
    load_s = time.perf_counter() - t0
    a = indexer.analyse(path)
    bank = app.bank()
    kk = k or app.settings.bank.k
    screening: Screening | None = None
    if confirm:
        screening = screen(bank, path, a.times, a.embeddings, a.pdq, k=kk, cascade=app.cascade,
                           layout=a.sampled.layout, stage_one_seconds=time.perf_counter() - t0 - load_s)
        verdicts = screening.policies
    else:
        verdicts = match_bank(bank, a.times, a.embeddings, a.pdq, kk)
    return Checked(path, a, verdicts, screening, app.encoder.model_id, app.encoder.random_weights,
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
