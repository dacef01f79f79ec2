"""Bank administration: exemplars made from a text, an image or a video's frames, and added under a policy.

Assembled once for ``sludge bank add``, ``POST /v1/bank/exemplars`` and the console's Bank page: each
made the exemplar with the encoder, created the policy when new (at ``bank.default_threshold`` unless a
threshold is given) and added it, by hand.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from search.bank import ExemplarBank
from search.exemplars import image_exemplar, text_exemplar, video_exemplars
from search.types import AddResult, Exemplar, Policy

if TYPE_CHECKING:
    from ops.app import App


def exemplars_for(app: App, policy: str, *, text: str | None = None, image: str | Path | None = None,
                  video: str | Path | None = None, sampler: str | None = None, note: str = "",
                  added_by: str | None = None,
                  lock: AbstractContextManager | None = None) -> list[tuple[Exemplar, np.ndarray]]:
    """The exemplars (with their vectors) of one text, one image file or one video's sampled frames.

    ``lock``: servers share one encoder between request threads and call it one at a time.
    """
    with lock or nullcontext():
        if text is not None:
            return [text_exemplar(app.encoder, policy, text, note=note, added_by=added_by)]
        keep = app.settings.exemplars_dir
        if image is not None:
            return [image_exemplar(app.encoder, policy, image, note=note, added_by=added_by, keep_dir=keep)]
        return video_exemplars(app.encoder, app.sampler(sampler), policy, video, limits=app.limits, note=note,
                               added_by=added_by, keep_dir=keep)


@dataclass
class Added:
    results: list[AddResult]
    created_policies: list[Policy] = field(default_factory=list)  # policies made for these exemplars


def add_exemplars(app: App, bank: ExemplarBank, items: list[tuple[Exemplar, np.ndarray]], *,
                  threshold: float | None = None, actor: str | None = None) -> Added:
    """Add exemplars, creating each new policy first (audited under ``actor``); re-adding is a no-op."""
    created = []
    for name in sorted({ex.policy for ex, _ in items}):
        p, new = bank.ensure_policy(name, threshold if threshold is not None else app.settings.bank.default_threshold,
                                    actor=actor)
        if new:
            created.append(p)
    return Added([bank.add(ex, vec, actor=actor) for ex, vec in items], created)


@dataclass
class ThresholdPreview:
    """What moving a policy's threshold from ``old`` to ``new`` would change among scores already seen
    (best-frame rule): how many would newly reach it (``up``) and how many would fall below (``down``)."""

    old: float
    new: float
    scored: int
    up: int
    down: int

    def to_dict(self) -> dict[str, float | int]:
        return {"old": self.old, "new": self.new, "scored": self.scored, "up": self.up, "down": self.down}


def threshold_preview(scores: list[float | None], old: float, new: float) -> ThresholdPreview:
    """Flips among ``scores`` (None: the item never matched the policy, so no threshold flags it)."""
    seen = [s for s in scores if s is not None]
    up = sum(1 for s in seen if new <= s < old)
    down = sum(1 for s in seen if old <= s < new)
    return ThresholdPreview(old, new, len(seen), up, down)
