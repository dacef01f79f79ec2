"""The cascade: cheap signals first, the confirm model only where they are unsure.

Stage one reads what ``sludge check`` already has: per-policy bank verdicts
(embedding scores against thresholds, and PDQ near-duplicates), what
video-level signals observed (the layout detector's result when present), and
transcript hits on configured terms. Both arrive as the decision record's types
(:mod:`indexer.decision`), and the cascade answers with that record.

- A decisive signal's match (a PDQ near-duplicate of a known exemplar: a
  re-upload) decides at stage one.
- The best policy margin (score − threshold) at or above ``band[1]`` decides
  "sludge" at stage one; below ``band[0]`` with no other signal, "clear".
- In the band ``[band[0], band[1])``, or when an observation escalates (the
  layout detector sees several feeds, with ``confirm_on_layout``) or the
  transcript hits a term, the video goes
  to stage two: Visual-Qwen over the sampled frames, majority vote.

Every :class:`Decision` records the stage that decided, its evidence and its
cost (model calls = frames the LM answered, seconds per stage). The heavy
model is loaded only when a video first reaches stage two, and stage-two
videos of one :meth:`Cascade.decide_many` call share batches (``sludge sweep
confirm``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from classifier.errors import ClassifierError
from indexer.decision import (
    DECISION_OF_VERDICT,
    DECISIVE,
    Decision,
    Observation,
    PolicyVerdict,
    layout_observation,
)
from indexer.errors import SludgeError

__all__ = ["Cascade", "CascadeInput", "Decision"]



@dataclass
class CascadeInput:
    """One video for the cascade: the bank's verdicts (records or their dicts), what video-level signals
    observed (``layout``: the layout detector's result, read as its observation), the transcript."""

    video_path: str
    bank_verdicts: Sequence[Any] = ()
    layout: Any = None
    transcript: Any = None
    stage_one_seconds: float = 0.0
    observations: Sequence[Observation] = ()

    def all_observations(self) -> list[Observation]:
        obs = list(self.observations)
        if not any(o.signal == "layout" for o in obs) and (lo := layout_observation(self.layout)) is not None:
            obs.append(lo)
        return obs


def _text(transcript: Any) -> str | None:
    if transcript is None:
        return None
    if isinstance(transcript, str):
        return transcript
    return getattr(transcript, "text", None) or None


class Cascade:
    def __init__(
        self,
        classifier: Any,
        *,
        sampler: Any = None,
        limits: Any = None,
        band: tuple[float, float] = (-0.05, 0.10),
        confirm_on_layout: bool = True,
        transcript_terms: Sequence[str] = (),
        transcriber: Callable[[], Any] | None = None,
    ) -> None:
        """``classifier``: a loaded model or a zero-argument factory (loaded on first stage-two video)."""
        if band[0] > band[1]:
            raise ClassifierError(f"cascade band {band}: the low edge is above the high edge")
        self._classifier = classifier
        from indexer.sampling import UniformSampler

        self.sampler = sampler or UniformSampler(4)
        self.limits = limits
        self.band = band
        self.confirm_on_layout = confirm_on_layout
        self.transcript_terms = tuple(t.lower() for t in transcript_terms if t.strip())
        self._transcriber = transcriber

    @property
    def classifier(self) -> Any:
        if callable(self._classifier) and not hasattr(self._classifier, "classify_batch"):
            self._classifier = self._classifier()
        return self._classifier

    # -- stage one ---------------------------------------------------------------------

    def stage_one(self, item: CascadeInput) -> tuple[Decision | None, dict[str, Any]]:
        """A decision when the cheap signals suffice, else None; and the evidence either way."""
        d, ev, _ = self._stage_one(item)
        return d, ev

    def _stage_one(self, item: CascadeInput) -> tuple[Decision | None, dict[str, Any], list[Observation]]:
        try:
            policies = [PolicyVerdict.of(v) for v in item.bank_verdicts]
        except (TypeError, KeyError) as e:
            raise ClassifierError(f"cannot read the stage-one verdicts: {e}") from None
        margins = [(p.margin, p.policy) for p in policies if p.margin is not None]
        best = max(margins) if margins else None
        decisive = [(p.policy, m) for p in policies for m in p.matches if m.decisive]
        observations = item.all_observations()
        escalating = [o for o in observations if o.escalate and (o.signal != "layout" or self.confirm_on_layout)]
        text = (_text(item.transcript) or "").lower()
        hits = [t for t in self.transcript_terms if t in text]
        layout = next((o.detail for o in observations if o.signal == "layout"), None)
        ev: dict[str, Any] = {
            "best_margin": None if best is None else round(best[0], 4),
            "best_policy": None if best is None else best[1],
            "band": list(self.band),
            "policies": [{"policy": p.policy, "verdict": p.verdict, "score": p.score, "threshold": p.threshold,
                          "rule": p.rule} for p in policies],
            # the key keeps its first name: PDQ was the only decisive signal then
            "pdq_matches": [{"policy": name, **asdict(m)} for name, m in decisive][:5],
            "layout": layout,
            "transcript_hits": hits,
            **{o.signal: o.detail for o in observations if o.signal != "layout"},
        }

        def decided(verdict: str, reason: str) -> Decision:
            return Decision(DECISION_OF_VERDICT[verdict], reason, 1, policies, ev, path=item.video_path)

        d = None
        if decisive:
            d = decided("sludge", DECISIVE[decisive[0][1].signal])
        elif best is not None and best[0] >= self.band[1]:
            d = decided("sludge", f"bank margin {best[0]:+.3f} ≥ {self.band[1]:+.3f}")
        else:
            in_band = best is not None and best[0] >= self.band[0]
            if not (in_band or escalating or hits):
                why = "no bank match" if best is None else f"bank margin {best[0]:+.3f} < {self.band[0]:+.3f}"
                d = decided("clear", why + ", no layout or transcript signal")
        return d, ev, escalating

    # -- both stages ---------------------------------------------------------------------

    def decide(self, video_path: str, bank_verdicts: Sequence[Any] = (), layout: Any = None,
               transcript: Any = None, stage_one_seconds: float = 0.0) -> Decision:
        return self.decide_many([CascadeInput(video_path, bank_verdicts, layout, transcript, stage_one_seconds)])[0]

    def decide_many(self, items: Sequence[CascadeInput]) -> list[Decision]:
        """Decide a batch; stage-two videos share the model's batches."""
        from indexer.pipeline import Limits, sample_video

        out: list[Decision | None] = []
        pending: list[tuple[int, CascadeInput, dict[str, Any], str]] = []
        for i, item in enumerate(items):
            t = time.perf_counter()
            d, ev, escalating = self._stage_one(item)
            s1 = item.stage_one_seconds + (time.perf_counter() - t)
            if d is not None:
                d.cost = {"model_calls": 0, "seconds": {"stage1": round(s1, 4), "stage2": 0.0}}
                out.append(d)
                continue
            reasons = []
            if ev["best_margin"] is not None and self.band[0] <= ev["best_margin"] < self.band[1]:
                reasons.append(f"bank margin {ev['best_margin']:+.3f} in band")
            reasons += [o.reason for o in escalating]
            if ev["transcript_hits"]:
                reasons.append("transcript hits " + ", ".join(ev["transcript_hits"]))
            out.append(None)
            pending.append((i, item, ev, "; ".join(reasons) or "uncertain"))
            ev["_s1"] = s1
        readable = []
        for i, item, ev, why in pending:  # a video stage two cannot read is left for review, not fatal to a batch
            t_tr = time.perf_counter()
            try:
                tr = _text(item.transcript)
                if tr is None and self._transcriber is not None:
                    trans = self._transcriber()
                    if trans is not None:
                        from indexer.video import probe

                        tr = _text(trans.transcribe(item.video_path)) if probe(item.video_path).has_audio else None
                sampled = sample_video(item.video_path, self.sampler, self.limits or Limits())
            except SludgeError as e:
                s1 = ev.pop("_s1")
                out[i] = Decision("review", f"{why}; stage two could not read the video: {e}", 2,
                                  _policies(item), ev,
                                  {"model_calls": 0, "seconds": {"stage1": round(s1, 4),
                                                                 "stage2": round(time.perf_counter() - t_tr, 4)}},
                                  path=item.video_path)
                continue
            readable.append((i, item, ev, why, (item.video_path, [f.image for f in sampled.frames],
                                                [f.ts for f in sampled.frames], tr), time.perf_counter() - t_tr))
        pending = [(i, item, ev, why) for i, item, ev, why, _, _ in readable]
        if pending:
            t = time.perf_counter()
            videos = [r[4] for r in readable]
            extra = [r[5] for r in readable]
            results = self.classifier.classify_batch(videos)
            model_s = time.perf_counter() - t
            n_frames = sum(len(v[1]) for v in videos) or 1
            for (i, item, ev, why), res, prep in zip(pending, results, extra):
                s1 = ev.pop("_s1")
                if not res.vote.decided:
                    verdict, reason = "review", f"{why}; stage two: all {res.vote.frames} answers unparseable"
                else:
                    verdict = "sludge" if res.vote.sludge else "clear"
                    reason = f"{why}; stage two: {res.vote.yes} yes / {res.vote.no} no of {res.vote.frames} frames"
                s2 = prep + model_s * len(res.frames) / n_frames
                out[i] = Decision(DECISION_OF_VERDICT[verdict], reason, 2, _policies(item), ev,
                                  {"model_calls": res.model_calls,
                                   "seconds": {"stage1": round(s1, 4), "stage2": round(s2, 4)}},
                                  res.to_dict(), path=item.video_path)
        return [d for d in out if d is not None]


def _policies(item: CascadeInput) -> list[PolicyVerdict]:
    return [PolicyVerdict.of(v) for v in item.bank_verdicts]
