import pytest

from indexer.errors import SamplerSpecError
from indexer.sampling import FpsSampler, SceneSampler, UniformSampler, parse_sampler


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("uniform:4", UniformSampler(4)),
        ("uniform", UniformSampler(4)),
        (" Uniform:8 ", UniformSampler(8)),
        ("fps:1,max:30", FpsSampler(1.0, 30)),
        ("fps:2", FpsSampler(2.0, 30)),
        ("fps:0.5,max:10", FpsSampler(0.5, 10)),
        ("scene", SceneSampler(0.3, 16)),
        ("scene:0.2,max:8", SceneSampler(0.2, 8)),
        ("scene:max:5", SceneSampler(0.3, 5)),
    ],
)
def test_parse(spec, expected):
    assert parse_sampler(spec) == expected
    assert parse_sampler(expected.spec) == expected  # spec round-trips


@pytest.mark.parametrize(
    "spec, words",
    [
        ("", "empty"),
        ("uniform:0", "at least 1"),
        ("uniform:x", "whole number"),
        ("uniform:2,3", "one number"),
        ("fps:-1", "above 0"),
        ("fps:1,max:0", "at least 1"),
        ("fps:1,foo", "unexpected"),
        ("scene:1.5", "at most 1"),
        ("keyframes", "unknown sampler"),
        ("uniform:100000", "max 10000"),
    ],
)
def test_bad_specs_are_explained(spec, words):
    with pytest.raises(SamplerSpecError, match=words):
        parse_sampler(spec)


def test_uniform_takes_slice_centres():
    assert UniformSampler(4).timestamps(8.0) == [1.0, 3.0, 5.0, 7.0]


def test_fps_follows_visual_qwen_training():
    # 1 fps at 0.5, 1.5, ... s
    assert FpsSampler(1.0, 30).timestamps(5.2) == [0.5, 1.5, 2.5, 3.5, 4.5]
    # longer than 30 s: 30 frames evenly subsampled, first and last kept
    ts = FpsSampler(1.0, 30).timestamps(61.0)
    assert len(ts) == 30 and ts[0] == 0.5 and ts[-1] == 60.5
    assert ts == sorted(set(ts))
    # shorter than half a period: its middle
    assert FpsSampler(1.0, 30).timestamps(0.4) == [0.2]
