"""The signal seam: each way of matching a video, against the exemplar bank or on its own, is one class.

Modelled on Hasher-Matcher-Actioner's ``SignalType``: a signal knows what it reads of a video (the
embeddings, the PDQ hashes, the layout, …) and gives either or both of:

- frame matches (:meth:`Signal.match`): per sampled frame, the bank's exemplars it matches, and whether
  one of its matches is decisive on its own (a near-duplicate of known content reaches any policy's
  threshold): the CLIP embedding KNN and PDQ;
- a video-level observation (:meth:`Signal.observe`) the cascade reads, which may ask the confirm stage
  to look: the layout detector's "several feeds".

Screening (:func:`match_frames`, :func:`observe_video`), the verdict rule (:func:`is_decisive`) and
every front end go through this registry, so a new signal (on-screen text, a video hash, an imported
hash list) is one subclass here, its registration and its tests, not edits across the front ends.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from indexer.decision import DECISIVE, Observation, layout_observation
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
    layout: Any = None  # the layout detector's result (its record or dict), None when it did not run


class Signal(abc.ABC):  # a signal implements match, observe or both: neither is abstract
    """One way of matching a video: frame by frame against the bank, or the video as a whole."""

    #: the name carried by each match (``Match.signal``) and observation, shown in verdicts and decisions
    name: ClassVar[str]
    #: a match counts as reaching any policy's threshold (exact or near-exact copies of known content)
    decisive: ClassVar[bool] = False
    #: the reason a decision gives when one of this signal's decisive matches decides it
    decisive_reason: ClassVar[str] = ""

    def match(self, bank: ExemplarBank, video: VideoEvidence, k: int,
              policies: list[str] | None = None) -> list[list[Match]]:
        """One list of matches per frame of ``video`` (empty lists where nothing matched), from the
        exemplars of ``policies`` only when given. A signal that does not match frames has none."""
        return [[] for _ in video.times]

    def observe(self, video: VideoEvidence) -> Observation | None:
        """What this signal sees of the video as a whole; None when it has nothing to say."""
        return None


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
    decisive_reason = DECISIVE["pdq"]

    def match(self, bank: ExemplarBank, video: VideoEvidence, k: int,
              policies: list[str] | None = None) -> list[list[Match]]:
        return bank.pdq_match(video.pdq, policies=policies)


class LayoutSignal(Signal):
    """The layout detector's result: a video showing several feeds at once asks the confirm stage to look.

    It matches no exemplar (the bank holds none of layouts); the first stage measured the layout, this
    turns it into the observation the cascade reads."""

    name = "layout"

    def observe(self, video: VideoEvidence) -> Observation | None:
        return layout_observation(video.layout)


SIGNALS: dict[str, Signal] = {}


def register(signal: Signal) -> Signal:
    """Add a signal to the ones screening runs (in registration order)."""
    SIGNALS[signal.name] = signal
    if signal.decisive:  # the decision record reads decisiveness from the match's signal name
        DECISIVE[signal.name] = signal.decisive_reason or f"decisive {signal.name} match of a known exemplar"
    return signal


register(EmbeddingSignal())
register(PdqSignal())
register(LayoutSignal())


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


def observe_video(video: VideoEvidence, *, signals: Iterable[Signal] | None = None) -> list[Observation]:
    """Every registered signal's observation of the video as a whole (those with something to say)."""
    found = (s.observe(video) for s in (SIGNALS.values() if signals is None else signals))
    return [o for o in found if o is not None]
