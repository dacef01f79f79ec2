"""The signal seam (search/signals.py): screening runs every registered signal, and a new signal is one
class. The example added here is an exact-file SHA-256 match against a list of known files' hashes
(which the bank cannot hold as exemplars today): a subclass, its registration, and nothing else."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from search.local.bank import LocalBank
from search.signals import SIGNALS, Signal, VideoEvidence, is_decisive, match_frames, register
from search.types import Exemplar, Match
from search.verdict import decide

DIM = 16
MODEL = "test/model"


class ExactFileSignal(Signal):
    """The video file is byte for byte one already known to be bad: every frame matches."""

    name = "sha256"
    decisive = True

    def __init__(self, known: dict[str, tuple[str, str]]) -> None:
        self.known = known  # sha256 of the file -> (policy, what it is)

    def match(self, bank, video: VideoEvidence, k: int, policies=None) -> list[list[Match]]:
        with open(video.path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        hit = self.known.get(digest)
        if hit and policies is not None and hit[0] not in policies:
            hit = None
        found = [Match(f"sha256:{digest[:16]}", hit[0], "file", hit[1], 1.0, self.name)] if hit else []
        return [list(found) for _ in video.times]


@pytest.fixture
def bank(tmp_path):
    rng = np.random.default_rng(0)
    v = rng.normal(size=DIM).astype(np.float32)
    v /= np.linalg.norm(v)
    with LocalBank(tmp_path / "bank", model_id=MODEL, dim=DIM) as b:
        b.ensure_policy("sludge", 0.9)
        b.add(Exemplar("", "sludge", "text", "split screen", "hash-split", MODEL), v)
        yield b, v


def test_the_registry_holds_the_two_bank_signals_in_order():
    assert list(SIGNALS)[:2] == ["embedding", "pdq"]
    assert is_decisive("pdq") and not is_decisive("embedding") and not is_decisive("no-such-signal")


def test_match_frames_merges_every_signal_per_frame(bank):
    b, v = bank
    video = VideoEvidence([0.0, 1.0], np.stack([v, -v]), [None, None])
    per_frame = match_frames(b, video, k=3)
    assert [t for t, _ in per_frame] == [0.0, 1.0]
    assert per_frame[0][1][0].signal == "embedding" and per_frame[0][1][0].score == pytest.approx(1.0, abs=1e-5)
    assert match_frames(b, VideoEvidence([], np.zeros((0, DIM), np.float32), []), k=3) == []


def test_a_new_signal_is_one_class(bank, tmp_path, monkeypatch):
    b, v = bank
    known = tmp_path / "known.mp4"
    known.write_bytes(b"bytes of a video already removed once")
    other = tmp_path / "other.mp4"
    other.write_bytes(b"some other upload")
    digest = hashlib.sha256(known.read_bytes()).hexdigest()
    monkeypatch.setattr("search.signals.SIGNALS", dict(SIGNALS))  # registered for this test only
    register(ExactFileSignal({digest: ("sludge", "known.mp4 (removed 2026-11-02)")}))
    # frames far from the text exemplar (cosine -1): the embedding alone says clear
    far = np.stack([-v, -v])
    for path, want in ((known, "candidate"), (other, "clear")):
        video = VideoEvidence([0.0, 2.0], far, [None, None], path=str(path))
        [verdict] = decide(b.list_policies(), match_frames(b, video, k=1))
        assert verdict.verdict == want, path
    video = VideoEvidence([0.0, 2.0], far, [None, None], path=str(known))
    [verdict] = decide(b.list_policies(), match_frames(b, video, k=1))
    assert verdict.frames_over == 2 and verdict.matches[0].signal == "sha256"  # decisive below the 0.9 threshold
