"""Step 1, sampling: short runs of consecutive frames spread over the video, at the analysis size."""

from __future__ import annotations

import av
import numpy as np

from indexer.errors import CorruptMediaError
from indexer.layout.params import DEFAULT_PARAMS, LayoutParams
from indexer.media import av_reason
from indexer.video import VideoReader


def analysis_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    s = long_side / max(width, height)
    return max(16, int(round(width * s / 2)) * 2), max(16, int(round(height * s / 2)) * 2)


def sample_runs(reader: VideoReader, params: LayoutParams = DEFAULT_PARAMS) -> list[np.ndarray]:
    """Short runs of consecutive frames, RGB uint8 at the analysis size: list of (run_len, h, w, 3).

    Short videos (up to ``short_video_s``) are read in one pass from the start, so every point gets
    its own run however sparse the keyframes are (a 4 s clip with one keyframe would otherwise give
    runs from its first second only: no evidence of what persists over time). Longer ones seek.
    """
    info = reader.info
    size = analysis_size(info.width, info.height, params.long_side)
    dur = max(info.duration, 1e-3)
    targets = [(i + 0.5) / params.n_runs * dur for i in range(params.n_runs)]
    errors: list[str] = []
    if dur <= params.short_video_s:
        runs = _runs_in_one_pass(reader, targets, size, params, errors)
    else:
        runs = _runs_by_seeking(reader, targets, size, params, errors)
    if not runs:
        why = f": {errors[0]}" if errors else ""
        raise CorruptMediaError(reader.path, f"no frame could be decoded for layout analysis{why}")
    if errors:
        reader.log.warnings.append(f"layout: decoding trouble at some points: {errors[0]}")
    return [np.stack(r + [r[-1]] * (params.run_len - len(r))) for r in runs]


def _runs_in_one_pass(reader: VideoReader, targets: list[float], size: tuple[int, int],
                      p: LayoutParams, errors: list[str]) -> list[list[np.ndarray]]:
    """Decode from the start; a run begins at the first frame at or after each target."""
    runs: list[list[np.ndarray]] = []
    i = 0  # next target
    try:
        for ft, frame in reader.decoded_from(0.0):
            if runs and len(runs[-1]) < p.run_len:
                runs[-1].append(reader.to_rgb(frame, size=size))
                continue
            if i >= len(targets):
                break
            if ft >= targets[i] - 1e-3:
                while i < len(targets) and ft >= targets[i] - 1e-3:
                    i += 1  # (frames sparser than the targets: one run for all the passed ones)
                runs.append([reader.to_rgb(frame, size=size)])
    except av.FFmpegError as e:
        errors.append(av_reason(e))
    return runs


def _runs_by_seeking(reader: VideoReader, targets: list[float], size: tuple[int, int],
                     p: LayoutParams, errors: list[str]) -> list[list[np.ndarray]]:
    """Seek to the keyframe before each target; take it (cheap), or decode forward to the target
    (at most ``max_lead`` frames) when an earlier target already took that keyframe."""
    runs: list[list[np.ndarray]] = []
    seen: set[float] = set()
    for t in targets:
        got: list[tuple[float, np.ndarray]] = []
        n = 0
        try:
            for ft, frame in reader.decoded_from(t):
                n += 1
                if not got and ft < t - 1e-3 and n <= p.max_lead and round(ft, 3) in seen:
                    continue
                got.append((ft, reader.to_rgb(frame, size=size)))
                if len(got) >= p.run_len:
                    break
        except av.FFmpegError as e:
            errors.append(av_reason(e))
        if not got:
            continue
        key = round(got[0][0], 3)
        if key in seen:
            continue
        seen.add(key)
        runs.append([g for _, g in got])
    return runs
