"""Decoding audio with PyAV: the first audio stream of any media file, as 16 kHz mono float32.

Speech models want one format (Whisper: 16 kHz, mono, float32 in [-1, 1]), and
uploads come in every container and codec, so everything goes through one
``av.AudioResampler``. Audio is handed out in fixed-length chunks so that a
three-hour upload never sits in memory whole: at most one chunk (plus one
decoded frame) is held at a time.

What real uploads throw at the decoder, and how it is handled here:
- no audio stream at all: :class:`NoAudioError` (callers treat it as silence);
- an empty, unreadable or non-media file: a typed error naming the file;
- a truncated file: the audio before the break is kept, with a logged
  warning; if nothing at all could be decoded, :class:`CorruptMediaError`;
- a few undecodable packets in the middle: skipped, with a logged warning;
- a stream whose sample rate or channel layout changes midway: the resampler
  is rebuilt instead of failing;
- audio that starts after the video: the first chunk's offset is the audio's
  start time on the container's clock, so segment times match the video.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from indexer.errors import (
    ConfigError,
    CorruptMediaError,
    MediaError,
    NoAudioError,
)

from indexer.media import av_reason, open_media

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
# Give up on a stream after this many undecodable packets in a row: by then it
# is garbage, not a glitch.
_MAX_BAD_PACKETS = 50

def _open(path: str | Path) -> av.container.InputContainer:
    return open_media(path)[0]


def has_audio_stream(path: str | Path) -> bool:
    """Whether the file has an audio stream, without decoding any of it.

    Raises the same typed errors as :func:`iter_audio_chunks` for files that
    cannot be opened, so a caller learns about a bad file at the cheap step.
    """
    with _open(path) as container:
        return bool(container.streams.audio)


def _declared_duration(container: av.container.InputContainer, stream: av.AudioStream) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and container.duration > 0:
        return container.duration / av.time_base
    return 0.0


def iter_audio_chunks(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    chunk_seconds: float = 600.0,
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(offset_seconds, samples)`` for the first audio stream, ``chunk_seconds`` at a time.

    Samples are mono float32 at ``sample_rate``; every chunk but the last holds
    exactly ``round(chunk_seconds * sample_rate)`` samples, and offsets are
    contiguous, so ``offset + len(samples) / sample_rate`` is where the next
    chunk starts. The file is opened and checked here, before the first chunk
    is asked for, so a bad file or a missing audio stream raises at the call
    (:class:`NoAudioError` for no audio stream) rather than somewhere in a loop.
    """
    if sample_rate <= 0:
        raise ConfigError(f"sample_rate must be positive, got {sample_rate}")
    if not chunk_seconds > 0:
        raise ConfigError(f"chunk_seconds must be positive, got {chunk_seconds}")
    container = _open(path)
    try:
        if not container.streams.audio:
            raise NoAudioError(path, "contains no audio stream")
        stream = container.streams.audio[0]
        if stream.codec_context is None:
            raise MediaError(path, "audio codec is not supported by this build of FFmpeg")
    except BaseException:
        container.close()
        raise
    chunk_len = max(1, round(chunk_seconds * sample_rate))
    return _chunks(str(path), container, stream, sample_rate, chunk_len)


def _chunks(
    path: str,
    container: av.container.InputContainer,
    stream: av.AudioStream,
    sample_rate: int,
    chunk_len: int,
) -> Iterator[tuple[float, np.ndarray]]:
    """The decoding loop behind :func:`iter_audio_chunks`; owns and closes the container."""
    clock0 = container.start_time / av.time_base if container.start_time else 0.0
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    pending: list[np.ndarray] = []
    n_pending = 0
    offset: float | None = None  # seconds of the next chunk's first sample
    decoded = 0  # samples produced so far, yielded or pending
    bad_run = 0  # undecodable packets in a row
    skipped = 0
    last_error = ""

    def resampled(frame: av.AudioFrame | None) -> list[av.AudioFrame]:
        nonlocal resampler
        try:
            return resampler.resample(frame)
        except ValueError:
            # The stream changed rate or layout: drain the old setup, start a new one.
            out = resampler.resample(None)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            return out + resampler.resample(frame)

    def take(frames: list[av.AudioFrame]) -> Iterator[tuple[float, np.ndarray]]:
        nonlocal n_pending, pending, offset, decoded
        for out in frames:
            samples = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            if samples.size == 0:
                continue
            pending.append(samples)
            n_pending += samples.size
            decoded += samples.size
            while n_pending >= chunk_len:
                buf = np.concatenate(pending) if len(pending) > 1 else pending[0]
                chunk, rest = buf[:chunk_len], buf[chunk_len:]
                pending = [rest.copy()] if rest.size else []
                n_pending = rest.size
                assert offset is not None
                yield offset, np.ascontiguousarray(chunk)
                offset += chunk_len / sample_rate

    try:
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as e:
                # Demuxing broke: the container itself is damaged past this point.
                last_error = av_reason(e)
                if decoded == 0:
                    raise CorruptMediaError(path, f"cannot read audio: {last_error}") from None
                log.warning(
                    "%s: audio stopped at %.2f s: %s", path, decoded / sample_rate, last_error
                )
                break
            try:
                frames = packet.decode()
            except av.FFmpegError as e:
                last_error = av_reason(e)
                bad_run += 1
                skipped += 1
                if bad_run > _MAX_BAD_PACKETS:
                    if decoded == 0:
                        raise CorruptMediaError(
                            path, f"cannot decode audio: {last_error}"
                        ) from None
                    log.warning(
                        "%s: audio stopped at %.2f s after %d undecodable packets: %s",
                        path,
                        decoded / sample_rate,
                        bad_run,
                        last_error,
                    )
                    break
                continue
            bad_run = 0
            for frame in frames:
                if offset is None:
                    t = frame.time
                    offset = max(0.0, (t - clock0) if t is not None else 0.0)
                yield from take(resampled(frame))
        if offset is None:
            offset = 0.0
        yield from take(resampled(None))
        if skipped:
            log.warning(
                "%s: skipped %d undecodable audio packet(s); last error: %s",
                path,
                skipped,
                last_error,
            )
        if decoded == 0:
            declared = _declared_duration(container, stream)
            if declared > 0 or skipped:
                why = f"{last_error}" if last_error else "truncated or damaged"
                raise CorruptMediaError(
                    path,
                    f"audio stream declares {declared:.2f} s but none could be decoded ({why})",
                )
            return  # an audio stream with no samples at all: nothing to hear
        if n_pending:
            yield offset, np.concatenate(pending) if len(pending) > 1 else pending[0]
    finally:
        container.close()
