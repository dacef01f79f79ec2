"""The signal seam: each way of matching a video's frames against the exemplar bank is one class.

Modelled on Hasher-Matcher-Actioner's ``SignalType``: a signal knows what it reads of a video (the
embeddings, the PDQ hashes, …), how it asks the bank, and whether one of its matches is decisive on its
own (a near-duplicate of known content reaches any policy's threshold). Screening
(:func:`match_frames`), the verdict rule (:func:`is_decisive`) and every front end go through this
registry, so a new signal (on-screen text, a video hash, an imported hash list) is one subclass here, its
registration and its tests, not edits across the front ends.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from search.types import Match

if TYPE_CHECKING:
    from search.bank import ExemplarBank


@dataclass(frozen=True)
class VideoEvidence:
    """What the first stage measured of one video, frame by frame (all lists in frame order)."""

    times: list[float]
    vectors: np.ndarray  # (frames, dim) normalised embeddings
    pdq: list[tuple[str, int] | None]  # (hex PDQ, quality) per frame, None where the frame had none
    path: str | None = None


class Signal(abc.ABC):
    """One way of matching: per sampled frame, the bank's exemplars it matches, best first."""

    #: the name carried by each match (``Match.signal``) and shown in verdicts and decisions
    name: ClassVar[str]
    #: a match counts as reaching any policy's threshold (exact or near-exact copies of known content)
    decisive: ClassVar[bool] = False

    @abc.abstractmethod
    def match(self, bank: ExemplarBank, video: VideoEvidence, k: int,
              policies: list[str] | None = None) -> list[list[Match]]:
        """One list of matches per frame of ``video`` (empty lists where nothing matched), from the
        exemplars of ``policies`` only when given."""


class EmbeddingSignal(Signal):
    """Cosine nearest neighbours of each frame's embedding among the enabled exemplars (KNN)."""

    name = "embedding"

    def match(self, bank: ExemplarBank, video: VideoEvidence, k: int,
              policies: list[str] | None = None) -> list[list[Match]]:
        return bank.knn(video.vectors, k, policies=policies)


class PdqSignal(Signal):
    """PDQ near-duplicates of known images and frames (re-uploads), within the bank's Hamming radius."""

    name = "pdq"
    decisive = True

    def match(self, bank: ExemplarBank, video: VideoEvidence, k: int,
              policies: list[str] | None = None) -> list[list[Match]]:
        return bank.pdq_match(video.pdq, policies=policies)


SIGNALS: dict[str, Signal] = {}


def register(signal: Signal) -> Signal:
    """Add a signal to the ones screening runs (in registration order)."""
    SIGNALS[signal.name] = signal
    return signal


register(EmbeddingSignal())
register(PdqSignal())


def frame_score(matches: list[Match]) -> float | None:
    """A frame's score against a policy from its matches: 1.0 when a decisive signal matched (it passes
    any threshold), else the best cosine; None when nothing matched."""
    if any(is_decisive(m.signal) for m in matches):
        return 1.0
    return max((m.score for m in matches), default=None)


def is_decisive(name: str) -> bool:
    """Does a match of this signal reach any threshold? Unknown names (old records) do not."""
    s = SIGNALS.get(name)
    return bool(s and s.decisive)


def match_frames(bank: ExemplarBank, video: VideoEvidence, k: int, *, policies: list[str] | None = None,
                 signals: Iterable[Signal] | None = None) -> list[tuple[float, list[Match]]]:
    """(frame time, that frame's matches from every signal) for each frame, as :func:`search.verdict.decide`
    takes them; only ``policies``' exemplars when given."""
    if not video.times:
        return []
    per_signal = [s.match(bank, video, k, policies)
                  for s in (SIGNALS.values() if signals is None else signals)]
    return [(t, [m for found in per_signal for m in found[i]]) for i, t in enumerate(video.times)]
