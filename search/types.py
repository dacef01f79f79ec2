"""What the stores hold and return, shared by every backend."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from indexer.errors import ConfigError

ExemplarKind = Literal["text", "image", "frame"]
EXEMPLAR_KINDS = ("text", "image", "frame")


#: The largest K of a ``k_of_n:K`` rule (more frames than any sampler takes).
MAX_RULE_K = 1000
#: The longest policy description kept (it is copied into audit entries and pages).
MAX_DESCRIPTION_CHARS = 2000


@dataclass(frozen=True)
class Rule:
    """How frame matches become a video verdict.

    ``best``: the video is a candidate when its best frame reaches the
    threshold. ``k_of_n:K``: when at least K sampled frames do (robust to one
    stray frame, e.g. a transition, matching).
    """

    kind: Literal["best", "k_of_n"] = "best"
    k: int = 1

    def __str__(self) -> str:
        return "best" if self.kind == "best" else f"k_of_n:{self.k}"

    @classmethod
    def parse(cls, text: str) -> "Rule":
        t = text.strip().lower()
        if t in ("best", "best_frame", "max"):
            return cls("best", 1)
        m = re.fullmatch(r"k_of_n:(\d{1,9})", t)
        if m and 1 <= int(m.group(1)) <= MAX_RULE_K:
            return cls("k_of_n", int(m.group(1)))
        raise ConfigError(f"unknown rule {text!r}; expected 'best' or 'k_of_n:K' (1 ≤ K ≤ {MAX_RULE_K})")


@dataclass
class Policy:
    name: str
    threshold: float
    rule: Rule = field(default_factory=Rule)
    description: str = ""
    created_at: float | None = None
    updated_at: float | None = None

    def check(self) -> "Policy":
        """Refuse what no store should keep: a bad name, threshold or an over-long description."""
        check_policy_name(self.name)
        check_threshold(self.threshold)
        if len(self.description) > MAX_DESCRIPTION_CHARS:
            raise ConfigError(f"policy {self.name!r}: the description has {len(self.description)} characters; at "
                              f"most {MAX_DESCRIPTION_CHARS} are allowed")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rule"] = str(self.rule)
        return d


def check_threshold(t: float) -> None:
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not -1.0 <= float(t) <= 1.0:
        raise ConfigError(f"threshold {t!r} is not a cosine similarity; use a value in [-1, 1]")


#: A policy name: also the API's path pattern, so schema and check agree.
POLICY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
_POLICY_NAME = re.compile(POLICY_NAME_PATTERN)


def check_policy_name(name: str) -> str:
    if not isinstance(name, str) or not _POLICY_NAME.fullmatch(name):  # fullmatch: '$' admits a final newline
        raise ConfigError(
            f"invalid policy name {name!r}: use 1-64 letters, digits, '_', '-', '.', ':' "
            "starting with a letter or digit"
        )
    return name


@dataclass
class Exemplar:
    exemplar_id: str
    policy: str
    kind: ExemplarKind
    source: str  # the text itself, or the file (and time) an image or frame came from
    content_hash: str
    model_id: str
    note: str = ""
    added_by: str = ""
    added_at: float = 0.0
    enabled: bool = True
    pdq: str | None = None
    pdq_quality: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Match:
    """One exemplar matched by one frame, on the shared cosine scale."""

    exemplar_id: str
    policy: str
    kind: str
    source: str
    score: float
    signal: str = "embedding"  # the name of the signal that matched (search.signals)
    #: PDQ matches only: Hamming distance in bits. ``score`` is then 1 - distance/128, the
    #: cosine of the two hashes as ±1 vectors; a PDQ match counts as reaching any threshold.
    distance: int | None = None


@dataclass
class AddResult:
    exemplar: Exemplar
    created: bool  # False: the same content was already in the policy


AUDIT_ACTIONS = (
    "policy.create", "policy.update", "exemplar.add", "exemplar.remove", "exemplar.enable",
    "exemplar.disable", "bank.rebuild", "label.confirm", "label.dismiss",
)

#: ``retract`` withdraws the reviewer's earlier label of the video for the policy (the console's Undo): labels
#: stay append-only, and the pair then has no label in force
LABEL_VERDICTS = ("confirm", "dismiss", "retract")


@dataclass
class Label:
    """A reviewer's verdict on a video for a policy: the confirm/deconfirm signal.

    Kept in the bank beside the policy it judges (and in its audit log), so
    thresholds can be calibrated on it (`sludge bank calibrate --from-labels`)
    and the confirm model trained on it (`sludge labels export`). Labels are
    never changed: a later label of the same video and policy supersedes.
    """

    policy: str
    video_id: str
    verdict: Literal["confirm", "dismiss", "retract"]
    reviewer: str
    subject: str = "decision"  # what was judged: decision | candidate | recall
    score: float | None = None  # the policy's score for the video when it was judged
    path: str | None = None  # the video file, for training exports
    note: str = ""
    label_id: str = ""
    at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_label(label: Label) -> None:
    check_policy_name(label.policy)
    if label.verdict not in LABEL_VERDICTS:
        raise ConfigError(f"label verdict {label.verdict!r}: use one of {', '.join(LABEL_VERDICTS)}")
    if not re.fullmatch(r"[0-9a-f]{64}", label.video_id or ""):
        raise ConfigError(f"label video id {label.video_id!r} is not a SHA-256 hex digest")
    if not label.reviewer:
        raise ConfigError("a label needs its reviewer")


@dataclass
class AuditEntry:
    """One change to a bank: who, when, what, and the item before and after (no vectors).

    Append-only on every backend (a Redis stream, an SQLite table), so a
    moderator can answer "who added this exemplar and what did it replace".
    """

    entry_id: str
    ts: float
    actor: str
    action: str
    target: str  # exemplar id or policy name
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RebuildReport:
    """What a rebuild (new encoder or index schema) did."""

    exemplars: int
    reembedded: int
    copied: int
    old_model: str | None
    new_model: str
    index: str | None = None  # the physical index now behind the alias (Redis)
    seconds: float = 0.0


@dataclass(frozen=True)
class FrameHit:
    frame_id: str
    video_id: str
    ts: float
    score: float


@dataclass
class StoredVideo:
    """A video's metadata as a history store keeps it (no embeddings)."""

    video_id: str
    path: str
    duration: float
    width: int
    height: int
    frame_count: int
    transcript: str
    has_speech: bool
    language: str | None
    model_id: str
    sampler: str
    indexed_at: float
    uploaded_at: float
    layout: str | None = None
    source: str | None = None
    decision: str | None = None
    #: the layout detector's detail (regions, confidence, feeds) as indexing recorded it; None for old rows
    layout_detail: dict[str, Any] | None = None


@dataclass
class VideoHit:
    """A recall result: frames grouped into their video."""

    video_id: str
    path: str
    score: float  # best frame
    timestamps: list[float]  # matching frames, best first
    frame_scores: list[float]
    snippet: str
    duration: float
    uploaded_at: float
    layout: str | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TranscriptHit:
    video_id: str
    score: float  # bm25-based relevance, larger is better; not on the cosine scale
    snippet: str
