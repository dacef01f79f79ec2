"""Frame matches → one verdict per policy, by the policy's threshold and rule.

Kept apart from every backend so that the embedded bank, Redis, the API and
the cascade all decide the same way from the same matches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from search.types import Match, Policy


@dataclass
class FrameMatch:
    ts: float
    exemplar_id: str
    kind: str
    source: str
    score: float
    signal: str = "embedding"


@dataclass
class PolicyVerdict:
    policy: str
    verdict: Literal["candidate", "clear"]
    score: float | None  # best frame score for this policy (cosine), None when nothing matched
    threshold: float
    rule: str
    frames_over: int  # sampled frames whose best match reached the threshold
    frames: int
    matches: list[FrameMatch] = field(default_factory=list)  # best first

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
        flat: list[FrameMatch] = []
        for ts, matches in frame_matches:
            mine = [m for m in matches if m.policy == policy.name]
            if not mine:
                continue
            best_per_frame.append(max(m.score for m in mine))
            flat.extend(FrameMatch(ts, m.exemplar_id, m.kind, m.source, m.score, m.signal) for m in mine)
        over = sum(1 for s in best_per_frame if s >= policy.threshold)
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
