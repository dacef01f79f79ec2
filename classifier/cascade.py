"""The cascade: cheap signals first, the confirm model only where they are unsure.

Stage one reads what ``sludge check`` already has: per-policy bank verdicts
(embedding scores against thresholds, and PDQ near-duplicates), the layout
detector's result when present, and transcript hits on configured terms.

- A PDQ near-duplicate of a known exemplar decides at stage one (a re-upload).
- The best policy margin (score − threshold) at or above ``band[1]`` decides
  "sludge" at stage one; below ``band[0]`` with no other signal, "clear".
- In the band ``[band[0], band[1])``, or when the layout detector sees several
  feeds (``confirm_on_layout``) or the transcript hits a term, the video goes
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
from dataclasses import dataclass, field
from typing import Any

from classifier.errors import ClassifierError
from indexer.errors import SludgeError

Verdict = str  # "sludge" | "clear" | "review" (stage two could not decide: every frame unparseable)


@dataclass
class Decision:
    path: str
    verdict: Verdict
    stage: int
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)
    confirm: dict[str, Any] | None = None  # stage two's per-frame answers and vote

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "verdict": self.verdict, "stage": self.stage, "reason": self.reason,
                "evidence": self.evidence, "cost": self.cost, "confirm": self.confirm}


@dataclass
class CascadeInput:
    video_path: str
    bank_verdicts: Sequence[Any] = ()
    layout: Any = None
    transcript: Any = None
    stage_one_seconds: float = 0.0


def _as_dict(v: Any) -> dict[str, Any]:
    if v is None:
        return {}
    if isinstance(v, dict):
        return v
    if hasattr(v, "to_dict"):
        return v.to_dict()
    raise ClassifierError(f"cannot read {type(v).__name__} as stage-one evidence (expected to_dict())")


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
        policies = [_as_dict(v) for v in item.bank_verdicts]
        margins = [(p["score"] - p["threshold"], p["policy"]) for p in policies if p.get("score") is not None]
        best = max(margins) if margins else None
        pdq = [{"policy": p["policy"], **m} for p in policies for m in p.get("matches", []) if m.get("signal") == "pdq"]
        layout = _as_dict(item.layout) if item.layout is not None else None
        multi = bool(layout and (layout.get("multi_feed") or (layout.get("n_feeds") or 0) > 1))
        text = (_text(item.transcript) or "").lower()
        hits = [t for t in self.transcript_terms if t in text]
        ev: dict[str, Any] = {
            "best_margin": None if best is None else round(best[0], 4),
            "best_policy": None if best is None else best[1],
            "band": list(self.band),
            "policies": [{k: p.get(k) for k in ("policy", "verdict", "score", "threshold", "rule")} for p in policies],
            "pdq_matches": pdq[:5],
            "layout": layout,
            "transcript_hits": hits,
        }
        d = None
        if pdq:
            d = Decision(item.video_path, "sludge", 1, "PDQ near-duplicate of a known exemplar", ev)
        elif best is not None and best[0] >= self.band[1]:
            d = Decision(item.video_path, "sludge", 1, f"bank margin {best[0]:+.3f} ≥ {self.band[1]:+.3f}", ev)
        else:
            in_band = best is not None and best[0] >= self.band[0]
            if not (in_band or (self.confirm_on_layout and multi) or hits):
                why = "no bank match" if best is None else f"bank margin {best[0]:+.3f} < {self.band[0]:+.3f}"
                d = Decision(item.video_path, "clear", 1, why + ", no layout or transcript signal", ev)
        return d, ev

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
            d, ev = self.stage_one(item)
            s1 = item.stage_one_seconds + (time.perf_counter() - t)
            if d is not None:
                d.cost = {"model_calls": 0, "seconds": {"stage1": round(s1, 4), "stage2": 0.0}}
                out.append(d)
                continue
            reasons = []
            if ev["best_margin"] is not None and self.band[0] <= ev["best_margin"] < self.band[1]:
                reasons.append(f"bank margin {ev['best_margin']:+.3f} in band")
            if self.confirm_on_layout and ev["layout"] and (ev["layout"].get("multi_feed")):
                reasons.append("layout shows several feeds")
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
                out[i] = Decision(item.video_path, "review", 2, f"{why}; stage two could not read the video: {e}", ev,
                                  {"model_calls": 0, "seconds": {"stage1": round(s1, 4),
                                                                 "stage2": round(time.perf_counter() - t_tr, 4)}})
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
                out[i] = Decision(item.video_path, verdict, 2, reason, ev,
                                  {"model_calls": res.model_calls,
                                   "seconds": {"stage1": round(s1, 4), "stage2": round(s2, 4)}},
                                  res.to_dict())
        return [d for d in out if d is not None]
