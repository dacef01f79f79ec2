"""Frame answers → one video verdict: strict majority of parseable frames, ties → not sludge.

Visual-Qwen's published code disagrees on unparseable frames (dropped, or
counted as "no"). Here the choice is explicit (``unparseable="drop"`` by
default, the model card's majority of *parseable* verdicts) and the count is
always reported. A video whose frames are all unparseable is not sludge and
is marked ``decided=False`` so callers can route it elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

UnparseablePolicy = Literal["drop", "no"]


@dataclass(frozen=True)
class Vote:
    sludge: bool
    yes: int
    no: int
    unparseable: int
    frames: int
    decided: bool
    unparseable_policy: str

    @property
    def yes_fraction(self) -> float | None:
        n = self.yes + self.no
        return self.yes / n if n else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["yes_fraction"] = self.yes_fraction
        return d


def majority_vote(answers: Sequence[bool | None], unparseable: UnparseablePolicy = "drop") -> Vote:
    if unparseable not in ("drop", "no"):
        raise ValueError(f"unparseable policy must be 'drop' or 'no', got {unparseable!r}")
    yes = sum(1 for a in answers if a is True)
    no = sum(1 for a in answers if a is False)
    bad = sum(1 for a in answers if a is None)
    counted_no = no + (bad if unparseable == "no" else 0)
    return Vote(sludge=yes > counted_no, yes=yes, no=no, unparseable=bad, frames=len(answers),
                decided=(yes + counted_no) > 0, unparseable_policy=unparseable)
