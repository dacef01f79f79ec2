"""Decoding with PyAV: probe a file, then take frames at chosen times.

What real uploads throw at a decoder, and how it is handled here:
- rotation metadata (phones): every frame is turned upright, and the reported
  width and height are the displayed ones;
- variable frame rate: frames are chosen by presentation time, never by index;
- a missing duration (some webm/mkv): found by demuxing packets, no decoding;
- corrupt or truncated data: a typed error naming the file; when decoding
  breaks after some frames were read, the frames before the break are kept
  and a warning says where it stopped.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from indexer.errors import (
    CorruptMediaError,
    MediaTooLargeError,
    NotAVideoError,
)
from indexer.media import av_reason, open_media
from indexer.records import Frame

# Seek instead of decoding forward when the next wanted time is this far ahead.
SEEK_GAP_S = 4.0
# Scene detection compares frames at this size (grey), a few per second.
_SCENE_SIZE = (64, 36)
_SCENE_FPS = 4.0


@dataclass(frozen=True)
class VideoInfo:
    path: str
    size_bytes: int
    container: str
    codec: str
    width: int  # as displayed, after rotation
    height: int
    rotation: int  # degrees the stored picture is turned to display it (0, 90, 180, 270)
    fps: float | None
    duration: float
    duration_source: str  # container | stream | scan | frames
    frame_count: int | None
    has_audio: bool
    audio_codec: str | None


@dataclass
class DecodeLog:
    """Non-fatal trouble met while decoding, reported with the record."""

    warnings: list[str] = field(default_factory=list)


def _rotation_k(rotation: float | int | None) -> int:
    """Quarter turns counter-clockwise (np.rot90) that display a stored frame upright.

    PyAV reports the display matrix angle counter-clockwise, as
    ``av_display_rotation_get`` does; ffmpeg's autorotate applies the same turn.
    """
    if not rotation:
        return 0
    return int(round(float(rotation) / 90.0)) % 4


class VideoReader:
    """One open media file. Use as a context manager; frames come out RGB uint8, upright."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_side: int | None = 1280,
        max_file_bytes: int | None = None,
        max_duration_s: float | None = None,
    ) -> None:
        self.path = str(path)
        self.max_side = max_side
        self.log = DecodeLog()
        self._reformatter = VideoReformatter()
        self._container, size = open_media(path, max_file_bytes)
        try:
            if not self._container.streams.video:
                raise NotAVideoError(path, "contains no video stream")
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"
            self.info = self._probe(size)
        except BaseException:
            self._container.close()
            raise
        if self.info.duration <= 0:
            self.close()
            raise CorruptMediaError(path, "video has no frames (zero length)")
        if max_duration_s is not None and self.info.duration > max_duration_s:
            self.close()
            raise MediaTooLargeError(
                path, f"video lasts {self.info.duration:.0f} s, above the limit of {max_duration_s:.0f} s"
            )

    # -- lifecycle -------------------------------------------------------

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    # -- probing -----------------------------------------------------------

    def _probe(self, size: int) -> VideoInfo:
        c, s = self._container, self._stream
        rate = s.average_rate or s.guessed_rate
        fps = float(rate) if rate else None
        frame_count = s.frames or None
        duration, source = 0.0, "scan"
        if c.duration and c.duration > 0:
            duration, source = c.duration / av.time_base, "container"
        elif s.duration and s.time_base:
            duration, source = float(s.duration * s.time_base), "stream"
        if duration <= 0:
            duration = self._scan_duration()
            source = "scan"
        if duration <= 0 and frame_count and fps:
            duration, source = frame_count / fps, "frames"
        rotation = self._rotation()
        w, h = s.codec_context.width, s.codec_context.height
        if rotation in (90, 270):
            w, h = h, w
        audio = c.streams.audio[0] if c.streams.audio else None
        return VideoInfo(
            path=self.path,
            size_bytes=size,
            container=c.format.name,
            codec=s.codec_context.name,
            width=w,
            height=h,
            rotation=rotation,
            fps=fps,
            duration=duration,
            duration_source=source,
            frame_count=frame_count,
            has_audio=audio is not None,
            audio_codec=audio.codec_context.name if audio is not None else None,
        )

    def _scan_duration(self) -> float:
        """Last packet end time, by demuxing only (cheap: no decoding)."""
        s = self._stream
        end = 0.0
        try:
            for packet in self._container.demux(s):
                if packet.pts is None or packet.time_base is None:
                    continue
                t = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                end = max(end, t)
        except av.FFmpegError as e:
            self.log.warnings.append(f"duration scan stopped early: {av_reason(e)}")
        self._rewind()
        start = float(s.start_time * s.time_base) if s.start_time and s.time_base else 0.0
        return max(end - start, 0.0)

    def _rotation(self) -> int:
        """Display rotation from the first frame's side data (the only reliable place)."""
        try:
            for frame in self._container.decode(self._stream):
                k = _rotation_k(getattr(frame, "rotation", 0))
                return k * 90
        except av.FFmpegError:
            return 0  # decoding trouble is reported by the frame readers
        finally:
            self._rewind()
        return 0

    def _rewind(self) -> None:
        try:
            self._container.seek(0)
        except av.FFmpegError:
            # Not seekable (pipes, some gifs): reopen instead.
            self._container.close()
            self._container = av.open(self.path, metadata_errors="ignore")
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"

    # -- decoding ------------------------------------------------------------

    @property
    def _start(self) -> float:
        s = self._stream
        return float(s.start_time * s.time_base) if s.start_time and s.time_base else 0.0

    def _frame_time(self, frame: av.VideoFrame, fallback: float) -> float:
        t = frame.time
        return (t - self._start) if t is not None else fallback

    def _decoded(self) -> Iterator[tuple[float, av.VideoFrame]]:
        """Frames from the current position with their time in seconds from the start."""
        n = 0
        fps = self.info.fps if hasattr(self, "info") and self.info.fps else 25.0
        for packet in self._container.demux(self._stream):
            for frame in packet.decode():
                yield self._frame_time(frame, n / fps), frame
                n += 1

    def _seek(self, t: float) -> bool:
        s = self._stream
        if not s.time_base:
            return False
        try:
            target = int((t + self._start) / s.time_base)
            self._container.seek(target, stream=s, backward=True, any_frame=False)
            return True
        except av.FFmpegError:
            return False

    def decoded_from(self, t: float = 0.0) -> Iterator[tuple[float, av.VideoFrame]]:
        """Raw decoded frames and their times (s), from the keyframe at or before ``t``.

        For callers that choose frames themselves (the layout analysis keeps short runs) and convert
        only those with :meth:`to_rgb`. From the start where the container cannot seek. Decoding
        errors are raised as they come (``av.FFmpegError``), after the frames before them.
        """
        if t <= 0 or not self._seek(t):
            self._rewind()
        return self._decoded()

    def to_rgb(self, frame: av.VideoFrame, size: tuple[int, int] | None = None) -> np.ndarray:
        """RGB uint8, upright, no side above ``max_side`` (or exactly ``size`` = (w, h) as displayed)."""
        k = _rotation_k(self.info.rotation)
        if size is None:
            w, h = frame.width, frame.height
            if self.max_side and max(w, h) > self.max_side:
                scale = self.max_side / max(w, h)
                w, h = max(2, round(w * scale)), max(2, round(h * scale))
        else:
            w, h = size if k % 2 == 0 else (size[1], size[0])
        # One reformatter per reader: ``frame.to_ndarray(width=...)`` builds a new swscale context for every
        # frame (its filter tables included), which cost as much as decoding a 720p frame here; a kept
        # reformatter reuses the context while size and format stay the same. Same pixels (bench/layout.py).
        img = self._reformatter.reformat(frame, format="rgb24", width=w, height=h).to_ndarray()
        return np.ascontiguousarray(np.rot90(img, k)) if k else img

    def frames_at(self, timestamps: Sequence[float]) -> list[Frame]:
        """The frame on screen at each time: the latest frame starting at or before it.

        Several times that fall on one frame give that frame once. Decoding
        seeks when the next time is far ahead, and decodes forward otherwise.
        """
        wanted = sorted(max(0.0, t) for t in timestamps)
        out: dict[float, Frame] = {}

        def take(t: float, frame: av.VideoFrame) -> None:
            key = round(t, 6)
            if key not in out:
                out[key] = Frame(ts=key, image=self.to_rgb(frame))

        i, n = 0, len(wanted)
        prev: tuple[float, av.VideoFrame] | None = None
        sought = -1.0  # seek at most once per wanted time: keyframes may lie far behind it
        self._rewind()
        frames = self._decoded()
        try:
            while i < n:
                try:
                    t, frame = next(frames)
                except StopIteration:
                    break
                while i < n and t > wanted[i] + 1e-9:
                    take(*(prev or (t, frame)))
                    i += 1
                prev = (t, frame)
                if i < n and wanted[i] - t > SEEK_GAP_S and wanted[i] != sought:
                    sought = wanted[i]
                    if self._seek(wanted[i]):
                        frames = self._decoded()
        except av.FFmpegError as e:
            if prev is None:
                raise CorruptMediaError(self.path, f"cannot decode video: {av_reason(e)}") from None
            self.log.warnings.append(
                f"decoding stopped at {prev[0]:.2f} s of {self.info.duration:.2f} s: {av_reason(e)}"
            )
        # Times past the last frame (duration metadata longer than the stream) get the last frame.
        if i < n and prev is not None:
            take(*prev)
        if not out:
            raise CorruptMediaError(self.path, "no frame could be decoded")
        return [out[k] for k in sorted(out)]

    def iter_frames(
        self, fps: float | None = None, size: tuple[int, int] | None = None, gray: bool = False
    ) -> Iterator[tuple[float, np.ndarray]]:
        """Every frame (or about ``fps`` per second), small and cheap to analyse.

        Used by scene detection and motion analysis; stops quietly at a decode
        error after the first frame, recording a warning.
        """
        self._rewind()
        step = 1.0 / fps if fps else 0.0
        next_t = 0.0
        got = False
        k = _rotation_k(self.info.rotation)
        try:
            for t, frame in self._decoded():
                if t + 1e-9 < next_t:
                    continue
                next_t = t + step
                got = True
                if size is not None:
                    w, h = size if k % 2 == 0 else (size[1], size[0])
                    img = frame.to_ndarray(format="gray" if gray else "rgb24", width=w, height=h)
                    yield t, (np.ascontiguousarray(np.rot90(img, k)) if k else img)
                else:
                    yield t, self.to_rgb(frame)
        except av.FFmpegError as e:
            if not got:
                raise CorruptMediaError(self.path, f"cannot decode video: {av_reason(e)}") from None
            self.log.warnings.append(f"decoding stopped early: {av_reason(e)}")

    def scene_frames(self, threshold: float, max_frames: int) -> list[Frame]:
        """First frame plus the frames after the strongest content changes.

        Change is the mean absolute difference of small grey thumbnails
        (0..1) between consecutive analysed frames, sampled a few times a
        second so slow pans do not add up to false cuts.
        """
        cuts: list[tuple[float, float]] = []  # (score, time)
        prev: np.ndarray | None = None
        for t, small in self.iter_frames(fps=_SCENE_FPS, size=_SCENE_SIZE, gray=True):
            cur = small.astype(np.float32) / 255.0
            if prev is None:
                cuts.append((float("inf"), t))
            else:
                score = float(np.mean(np.abs(cur - prev)))
                if score >= threshold:
                    cuts.append((score, t))
            prev = cur
        if not cuts:
            raise CorruptMediaError(self.path, "no frame could be decoded")
        best = heapq.nlargest(max_frames, cuts)
        times = sorted(t for _, t in best)
        # Take the frame slightly after the change so a cross-fade has settled.
        settle = 0.5 / _SCENE_FPS
        limit = max(self.info.duration - 1e-3, 0.0)
        return self.frames_at([min(t + (settle if i else 0.0), limit) for i, t in enumerate(times)])


def probe(path: str | Path) -> VideoInfo:
    with VideoReader(path) as r:
        return r.info

