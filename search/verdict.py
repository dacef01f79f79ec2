"""Frame matches → one verdict per policy, by the policy's threshold and rule.

The records (:class:`PolicyVerdict`, :class:`FrameMatch`) are the decision
record's (:mod:`indexer.decision`), shared with the cascade.

Kept apart from every backend so that the embedded bank, Redis, the API and
the cascade all decide the same way from the same matches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from indexer.decision import FrameMatch, PolicyVerdict
from search.signals import is_decisive
from search.types import Match, Policy, Rule

__all__ = ["Calibration", "CalibrationRow", "FrameMatch", "PolicyVerdict", "calibrate", "decide", "video_score"]


def decide(
    policies: list[Policy],
    frame_matches: list[tuple[float, list[Match]]],
    *,
    max_matches: int = 5,
) -> list[PolicyVerdict]:
    """One verdict per policy; ``frame_matches`` is (frame time, that frame's matches)."""
    out: list[PolicyVerdict] = []
    n = len(frame_matches)
    for policy in policies:
        best_per_frame: list[float] = []
        over = 0
        flat: list[FrameMatch] = []
        for ts, matches in frame_matches:
            mine = [m for m in matches if m.policy == policy.name]
            if not mine:
                continue
            best_per_frame.append(max(m.score for m in mine))
            # A decisive signal's match (PDQ: a near-duplicate of known content, Hasher-Matcher-Actioner's
            # rule) counts as reaching the threshold whatever the policy's cosine threshold.
            if any(is_decisive(m.signal) or m.score >= policy.threshold for m in mine):
                over += 1
            flat.extend(FrameMatch(ts, m.exemplar_id, m.kind, m.source, m.score, m.signal) for m in mine)
        if policy.rule.kind == "best":
            hit = over >= 1
        else:
            hit = over >= min(policy.rule.k, max(n, 1))
        flat.sort(key=lambda m: -m.score)
        # Keep the strongest match per exemplar so the evidence is not one exemplar repeated.
        seen: set[str] = set()
        top: list[FrameMatch] = []
        for m in flat:
            if m.exemplar_id not in seen:
                seen.add(m.exemplar_id)
                top.append(m)
            if len(top) >= max_matches:
                break
        out.append(
            PolicyVerdict(
                policy=policy.name,
                verdict="candidate" if hit else "clear",
                score=max(best_per_frame) if best_per_frame else None,
                threshold=policy.threshold,
                rule=str(policy.rule),
                frames_over=over,
                frames=n,
                matches=top,
            )
        )
    out.sort(key=lambda v: (v.verdict != "candidate", -(v.score if v.score is not None else -2)))
    return out


# -- calibration -------------------------------------------------------------------------


def video_score(rule: Rule, frame_scores: list[float]) -> float | None:
    """The threshold at which ``rule`` would just flag this video.

    ``best``: the best frame's score. ``k_of_n:K``: the K-th best frame score
    (K capped at the frames sampled, as :func:`decide` does). None when no
    frame matched the policy at all.
    """
    if not frame_scores:
        return None
    ordered = sorted(frame_scores, reverse=True)
    k = 1 if rule.kind == "best" else min(rule.k, len(ordered))
    return ordered[k - 1]


@dataclass
class CalibrationRow:
    threshold: float
    precision: float | None  # None when nothing is flagged
    recall: float
    flagged_positives: int
    flagged_negatives: int


@dataclass
class Calibration:
    rows: list[CalibrationRow]
    positives: int
    negatives: int
    target_precision: float
    #: the lowest threshold whose precision reaches the target (most recall), or None
    chosen: CalibrationRow | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibrate(positives: list[float | None], negatives: list[float | None], *,
              target_precision: float = 0.95, step: float = 0.01) -> Calibration:
    """Precision and recall of "flag when score ≥ t" for t on a grid over [-1, 1].

    Items that never matched (None) are never flagged. The grid is every
    ``step`` plus every observed score, so the reported best threshold is exact.
    """
    pos = [s for s in positives if s is not None]
    neg = [s for s in negatives if s is not None]
    grid = {round(-1.0 + i * step, 6) for i in range(int(round(2.0 / step)) + 1)}
    grid |= {round(s, 6) for s in pos + neg}
    rows = []
    for t in sorted(grid):
        tp = sum(1 for s in pos if s >= t)
        fp = sum(1 for s in neg if s >= t)
        rows.append(CalibrationRow(t, tp / (tp + fp) if tp + fp else None,
                                   tp / len(positives) if positives else 0.0, tp, fp))
    ok = [r for r in rows if r.precision is not None and r.precision >= target_precision and r.flagged_positives]
    chosen = max(ok, key=lambda r: (r.recall, -r.threshold)) if ok else None
    if chosen is not None:  # lowest threshold among those with the same (best) recall
        chosen = min((r for r in ok if r.recall == chosen.recall), key=lambda r: r.threshold)
    return Calibration(rows, len(positives), len(negatives), target_precision, chosen)
