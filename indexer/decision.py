"""The decision record: what screening concluded about one video, and why.

One record for every stage and every front end. ``search`` fills in the
per-policy verdicts (:func:`search.verdict.decide`), the cascade in
``classifier`` adds the stage that decided, its evidence and its cost, and
``ops`` hands the same :class:`Decision` to ``sludge check --json``, the job
the API shows, the webhook and the console (each adds its own context around
it: the job, the file, the video's frames). It lives here, at the bottom, so
that ``search`` and ``classifier``, which do not import each other, share it.

Signals meet the record in two ways: a frame-level signal's matches become
:class:`FrameMatch` entries of a :class:`PolicyVerdict`, and a video-level
signal (the layout detector) leaves an :class:`Observation` the cascade reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

#: The cascade's verdicts as the decisions the platform receives.
DECISION_OF_VERDICT = {"sludge": "flagged", "clear": "cleared", "review": "review"}
VERDICT_OF_DECISION = {d: v for v, d in DECISION_OF_VERDICT.items()}

#: Decisive signals (a match reaches any policy's threshold) by name, with the reason a decision gives
#: when one of their matches decides. :func:`search.signals.register` adds each decisive signal; PDQ, whose
#: hashes the first stage here computes, is known from the start, so a cascade reading stored verdicts
#: knows it without the search package loaded.
DECISIVE: dict[str, str] = {"pdq": "PDQ near-duplicate of a known exemplar"}


@dataclass
class FrameMatch:
    """One exemplar a sampled frame matched, by one signal."""

    ts: float
    exemplar_id: str
    kind: str
    source: str
    score: float
    signal: str = "embedding"

    @property
    def decisive(self) -> bool:
        return self.signal in DECISIVE

    @classmethod
    def of(cls, m: FrameMatch | dict[str, Any]) -> FrameMatch:
        return m if isinstance(m, FrameMatch) else cls(**{k: m[k] for k in cls.__dataclass_fields__ if k in m})


@dataclass
class PolicyVerdict:
    """One policy's verdict on one video, by its threshold and rule over the frames' matches."""

    policy: str
    verdict: Literal["candidate", "clear"]
    score: float | None  # best frame score for this policy (cosine), None when nothing matched
    threshold: float
    rule: str
    frames_over: int  # sampled frames whose best match reached the threshold
    frames: int
    matches: list[FrameMatch] = field(default_factory=list)  # best first

    @property
    def margin(self) -> float | None:
        """How far the best score is above (or below) the threshold."""
        return None if self.score is None else self.score - self.threshold

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, v: PolicyVerdict | dict[str, Any]) -> PolicyVerdict:
        """A verdict from its record or its dict (``to_dict()``, a stored decision, a sweep candidate)."""
        if isinstance(v, PolicyVerdict):
            return v
        if not isinstance(v, dict):
            if not hasattr(v, "to_dict"):
                raise TypeError(f"cannot read {type(v).__name__} as a policy verdict")
            v = v.to_dict()
        return cls(v["policy"], v.get("verdict", "clear"), v.get("score"), v["threshold"], v.get("rule", "best"),
                   v.get("frames_over", 0), v.get("frames", 0), [FrameMatch.of(m) for m in v.get("matches", [])])


@dataclass
class Observation:
    """What a video-level signal saw of the whole video; ``escalate``: it asks the confirm stage to look."""

    signal: str
    escalate: bool
    reason: str  # why, in words, when it escalates
    detail: dict[str, Any] = field(default_factory=dict)


def layout_observation(layout: Any) -> Observation | None:
    """The layout detector's result (its record or dict) as an observation: several feeds escalate."""
    if layout is None:
        return None
    d = layout if isinstance(layout, dict) else layout.to_dict()
    multi = bool(d.get("multi_feed") or (d.get("n_feeds") or 0) > 1)
    return Observation("layout", multi, "layout shows several feeds", d)


@dataclass
class Decision:
    """The outcome of screening one video: flagged, cleared or review, by which stage, and why.

    ``policies``: every policy's verdict from the bank's signals. ``evidence``
    and ``cost``: the cascade's (empty when the prefilter alone decided).
    ``confirm``: stage two's per-frame answers and vote when it ran.
    ``seconds``: time per step (``match``, and the cascade's stages).
    """

    decision: Literal["flagged", "cleared", "review"]
    reason: str
    stage: int = 1
    policies: list[PolicyVerdict] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)
    confirm: dict[str, Any] | None = None
    path: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """The cascade's word for the decision: sludge, clear or review."""
        return VERDICT_OF_DECISION[self.decision]

    @property
    def by_cascade(self) -> bool:
        return bool(self.cost)

    @property
    def matched_policies(self) -> list[str]:
        return [v.policy for v in self.policies if v.verdict == "candidate"]

    def to_dict(self) -> dict[str, Any]:
        """The record as a job's decision and the history carry it."""
        return {"decision": self.decision, "reason": self.reason, "stage": self.stage,
                "policies": [v.to_dict() for v in self.policies], "confirm": self.confirm,
                "cascade": {"evidence": self.evidence, "cost": self.cost} if self.by_cascade else None,
                "seconds": self.seconds}


def prefilter_decision(verdicts: list[PolicyVerdict], *, path: str = "",
                       seconds: dict[str, float] | None = None) -> Decision:
    """The decision without the cascade: any policy candidate flags the video."""
    hits = [v for v in verdicts if v.verdict == "candidate"]
    if not hits:
        return Decision("cleared", "no policy reached its threshold", policies=verdicts, path=path,
                        seconds=seconds or {})
    best = max(hits, key=lambda v: v.score if v.score is not None else -2.0)
    names = ", ".join(v.policy for v in hits)
    return Decision("flagged", f"bank: {names} (best {best.policy} {best.score:.3f} ≥ {best.threshold:g})",
                    policies=verdicts, path=path, seconds=seconds or {})
