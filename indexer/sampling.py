"""Frame sampling policies, chosen by a short specification string.

- ``uniform:N``: N frames at the centres of N equal slices of the video
  (default 4, as the Visual-Qwen out-of-distribution evaluation). Centres, not
  edges: first and last frames are often black or a fade.
- ``fps:R,max:M``: Visual-Qwen's training sampler: R frames per second at
  t = 0.5/R, 1.5/R, ...; when that gives more than M, M of them evenly
  subsampled (the seed used ``fps:1,max:30``).
- ``scene[:T][,max:M]``: the first frame plus every frame whose content differs
  from the previous analysed frame by more than T (0..1, default 0.3), at most
  M (default 16, the strongest cuts kept, in time order).

A sampler only decides *which* times to take; :mod:`indexer.video` decodes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from indexer.errors import SamplerSpecError

if TYPE_CHECKING:
    from indexer.records import Frame
    from indexer.video import VideoReader


class Sampler(Protocol):
    spec: str

    def sample(self, reader: "VideoReader") -> list["Frame"]: ...


def _timestamps_evenly(n: int, duration: float) -> list[float]:
    return [(i + 0.5) * duration / n for i in range(n)]


@dataclass(frozen=True)
class UniformSampler:
    n: int = 4

    @property
    def spec(self) -> str:
        return f"uniform:{self.n}"

    def timestamps(self, duration: float) -> list[float]:
        return _timestamps_evenly(self.n, duration)

    def sample(self, reader: "VideoReader") -> list["Frame"]:
        return reader.frames_at(self.timestamps(reader.info.duration))


@dataclass(frozen=True)
class FpsSampler:
    rate: float = 1.0
    max_frames: int = 30

    @property
    def spec(self) -> str:
        return f"fps:{self.rate:g},max:{self.max_frames}"

    def timestamps(self, duration: float) -> list[float]:
        step = 1.0 / self.rate
        n = int(np.floor(duration * self.rate - 0.5)) + 1 if duration > 0 else 0
        ts = [(k + 0.5) * step for k in range(max(n, 0))]
        if not ts:  # shorter than half a period: take its middle
            ts = [duration / 2]
        if len(ts) > self.max_frames:
            idx = np.linspace(0, len(ts) - 1, self.max_frames).round().astype(int)
            ts = [ts[i] for i in idx]
        return ts

    def sample(self, reader: "VideoReader") -> list["Frame"]:
        return reader.frames_at(self.timestamps(reader.info.duration))


@dataclass(frozen=True)
class SceneSampler:
    threshold: float = 0.3
    max_frames: int = 16

    @property
    def spec(self) -> str:
        return f"scene:{self.threshold:g},max:{self.max_frames}"

    def sample(self, reader: "VideoReader") -> list["Frame"]:
        return reader.scene_frames(self.threshold, self.max_frames)


def _positive_int(name: str, text: str, spec: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise SamplerSpecError(f"sampler {spec!r}: {name} must be a whole number, got {text!r}") from None
    if v < 1:
        raise SamplerSpecError(f"sampler {spec!r}: {name} must be at least 1, got {v}")
    if v > 10_000:
        raise SamplerSpecError(f"sampler {spec!r}: {name} of {v} is more frames than any policy needs (max 10000)")
    return v


def _positive_float(name: str, text: str, spec: str, upper: float | None = None) -> float:
    try:
        v = float(text)
    except ValueError:
        raise SamplerSpecError(f"sampler {spec!r}: {name} must be a number, got {text!r}") from None
    if not np.isfinite(v) or v <= 0 or (upper is not None and v > upper):
        bound = f" and at most {upper:g}" if upper is not None else ""
        raise SamplerSpecError(f"sampler {spec!r}: {name} must be above 0{bound}, got {text!r}")
    return v


SAMPLER_HELP = "uniform:N | fps:R,max:M | scene[:T][,max:M]"


def parse_sampler(spec: str) -> Sampler:
    """Parse a sampler specification; raises SamplerSpecError naming what is wrong."""
    raw = spec
    spec = spec.strip().lower()
    if not spec:
        raise SamplerSpecError(f"empty sampler specification; expected {SAMPLER_HELP}")
    name, _, rest = spec.partition(":")
    parts = [p.strip() for p in rest.split(",")] if rest else []
    if name == "uniform":
        if len(parts) > 1:
            raise SamplerSpecError(f"sampler {raw!r}: uniform takes one number, e.g. uniform:4")
        return UniformSampler(_positive_int("N", parts[0], raw) if parts else 4)
    if name == "fps":
        rate, max_frames = 1.0, 30
        for i, p in enumerate(parts):
            if p.startswith("max:"):
                max_frames = _positive_int("max", p[4:], raw)
            elif i == 0:
                rate = _positive_float("rate", p, raw, upper=240)
            else:
                raise SamplerSpecError(f"sampler {raw!r}: unexpected {p!r}; expected fps:R,max:M")
        return FpsSampler(rate, max_frames)
    if name == "scene":
        threshold, max_frames = 0.3, 16
        for i, p in enumerate(parts):
            if p.startswith("max:"):
                max_frames = _positive_int("max", p[4:], raw)
            elif i == 0:
                threshold = _positive_float("threshold", p, raw, upper=1.0)
            else:
                raise SamplerSpecError(f"sampler {raw!r}: unexpected {p!r}; expected scene:T,max:M")
        return SceneSampler(threshold, max_frames)
    raise SamplerSpecError(f"unknown sampler {raw!r}; expected {SAMPLER_HELP}")
