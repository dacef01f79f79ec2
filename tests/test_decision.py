"""The decision record (indexer/decision.py) and the video-level side of the signal seam.

The cascade's stage one is exercised without its model (nothing here reaches stage two): what it reads
are the record's types, the layout arrives as a signal's observation, and a new decisive or video-level
signal changes its outcome without any edit to the cascade.
"""

from __future__ import annotations

import pytest

from classifier.cascade import Cascade, CascadeInput
from indexer.decision import (
    DECISIVE,
    Decision,
    FrameMatch,
    Observation,
    PolicyVerdict,
    prefilter_decision,
)
from indexer.errors import SludgeError
from indexer.pipeline import VideoIndexer
from indexer.sampling import UniformSampler
from search.signals import SIGNALS, LayoutSignal, Signal, VideoEvidence, observe_video, register


def _no_model():
    raise AssertionError("stage one must not load the confirm model")


def _verdict(score: float, *matches: FrameMatch) -> PolicyVerdict:
    return PolicyVerdict("sludge", "candidate" if score >= 0.25 else "clear", score, 0.25, "best", 1, 2,
                         list(matches))


def test_layout_is_a_signal_whose_observation_escalates():
    multi = {"layout": "vertical", "multi_feed": True, "n_feeds": 2, "confidence": 0.9}
    single = {"layout": "single", "multi_feed": False, "n_feeds": 1}
    video = VideoEvidence([0.0], None, [None], layout=multi)
    assert "layout" in SIGNALS and isinstance(SIGNALS["layout"], LayoutSignal)
    [obs] = observe_video(video)
    assert (obs.signal, obs.escalate, obs.detail) == ("layout", True, multi)
    assert observe_video(VideoEvidence([0.0], None, [None], layout=single))[0].escalate is False
    assert observe_video(VideoEvidence([0.0], None, [None])) == []  # the detector did not run

    cascade = Cascade(_no_model)
    low = [_verdict(-0.5)]  # far below the band: alone, the bank clears it
    d, ev = cascade.stage_one(CascadeInput("v.mp4", low, observations=[obs]))
    assert d is None and ev["layout"] == multi  # several feeds: stage two must look
    d, _ = cascade.stage_one(CascadeInput("v.mp4", low, observations=observe_video(
        VideoEvidence([0.0], None, [None], layout=single))))
    assert d is not None and d.decision == "cleared" and d.stage == 1
    d, _ = Cascade(_no_model, confirm_on_layout=False).stage_one(CascadeInput("v.mp4", low, observations=[obs]))
    assert d is not None and d.decision == "cleared"
    # the older way in, a layout dict, is read as the same observation
    d, ev = cascade.stage_one(CascadeInput("v.mp4", low, layout=multi))
    assert d is None and ev["layout"] == multi


def test_a_new_video_level_signal_escalates_without_cascade_edits():
    class OnScreenText(Signal):
        name = "ocr"

        def observe(self, video):
            return Observation("ocr", True, "burned-in text names a banned game", {"text": "subway surfers"})

    obs = observe_video(VideoEvidence([0.0], None, [None]), signals=[OnScreenText(), LayoutSignal()])
    d, ev = Cascade(_no_model).stage_one(CascadeInput("v.mp4", [_verdict(-0.5)], observations=obs))
    assert d is None and ev["ocr"] == {"text": "subway surfers"} and ev["layout"] is None


def test_a_new_decisive_signal_decides_stage_one_with_its_reason(monkeypatch):
    class ExactFile(Signal):
        name = "sha256"
        decisive = True
        decisive_reason = "byte-identical to a removed upload"

    monkeypatch.setattr("search.signals.SIGNALS", dict(SIGNALS))
    monkeypatch.setitem(DECISIVE, "sha256", "")  # so that the entry register() writes goes with the test
    register(ExactFile())
    hit = FrameMatch(0.0, "sha256:ab", "file", "removed.mp4", 1.0, "sha256")
    d, ev = Cascade(_no_model).stage_one(CascadeInput("v.mp4", [_verdict(-0.5, hit)]))
    assert (d.decision, d.verdict, d.stage, d.reason) == ("flagged", "sludge", 1, "byte-identical to a removed upload")
    assert ev["pdq_matches"][0]["signal"] == "sha256"


def test_the_record_reads_and_writes_its_dicts():
    m = FrameMatch(1.5, "e1", "image", "x.png", 0.91, "pdq")
    v = _verdict(0.91, m)
    assert PolicyVerdict.of(v.to_dict()) == v and PolicyVerdict.of(v) is v
    assert v.margin == pytest.approx(0.66) and m.decisive and not FrameMatch(0, "e", "text", "t", 0.3).decisive
    with pytest.raises(TypeError):
        PolicyVerdict.of(42)

    flagged = prefilter_decision([v, _verdict(0.1)], path="v.mp4", seconds={"match": 0.01})
    assert (flagged.decision, flagged.verdict, flagged.matched_policies) == ("flagged", "sludge", ["sludge"])
    out = flagged.to_dict()
    assert list(out) == ["decision", "reason", "stage", "policies", "confirm", "cascade", "seconds"]
    assert out["cascade"] is None and out["policies"][0]["matches"][0]["signal"] == "pdq"
    cleared = prefilter_decision([_verdict(0.1)])
    assert (cleared.decision, cleared.reason) == ("cleared", "no policy reached its threshold")
    by_cascade = Decision("review", "why", 2, cost={"model_calls": 0})
    assert by_cascade.to_dict()["cascade"] == {"evidence": {}, "cost": {"model_calls": 0}}


def test_the_encoder_loads_only_once_a_file_has_decoded(tmp_path):
    """`sludge check` on a corrupt file answers before any model loads."""
    calls = []

    def factory():
        calls.append(1)
        raise AssertionError("the encoder was loaded for a file that does not decode")

    bad = tmp_path / "not-a-video.mp4"
    bad.write_bytes(b"this is not a video at all" * 100)
    with pytest.raises(SludgeError):
        VideoIndexer(factory, UniformSampler(2)).analyse(bad)
    assert calls == []
