"""Screening one video against the bank, and (optionally) the cascade's confirm stage.

One place for what ``sludge check`` and the hooks workers both do with a
video's sampled frames: embedding KNN + PDQ near-duplicates against the bank,
one verdict per policy, then a video decision. Without ``confirm`` the
decision is the prefilter's (any policy candidate → flagged); with it the
cascade decides, sending uncertain videos to Visual-Qwen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from search.bank import ExemplarBank
from search.verdict import PolicyVerdict, decide

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
    """Per-policy verdicts from both match signals over a video's sampled frames."""
    if len(times) == 0:
        return decide(bank.list_policies(), [])
    matches = bank.knn(vectors, k)
    dups = bank.pdq_match(pdq)  # second signal: re-uploads of known content
    return decide(bank.list_policies(), [(t, m + d) for t, m, d in zip(times, matches, dups)])


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
