"""One media file → one :class:`VideoRecord`: hash, decode, sample, embed, PDQ, transcribe.

The sequential form: each stage runs after the previous for one video. Stage
timings are kept on the record so benchmarks can split the cost. The
overlapped form (many videos, stages in their own threads) is
:mod:`indexer.overlap`; both build records with :meth:`VideoIndexer.build_record`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.encoders.base import Encoder
from indexer.errors import NoAudioError
from indexer.identity import file_sha256, frame_id
from indexer.layout import DEFAULT_PARAMS, LayoutParams, LayoutResult, analyze_layout
from indexer.pdq import pdq_hash
from indexer.records import EMPTY_TRANSCRIPT, Frame, FrameRecord, Transcript, VideoRecord
from indexer.sampling import Sampler
from indexer.video import VideoInfo, VideoReader


@dataclass(frozen=True)
class Limits:
    max_side: int = 1280
    max_file_bytes: int | None = 4 * 1024**3
    max_duration_s: float | None = 3 * 3600.0


@dataclass
class Sampled:
    info: VideoInfo
    frames: list[Frame]
    warnings: list[str]
    seconds: float
    layout: LayoutResult | None = None
    layout_seconds: float = 0.0


@dataclass
class Analysed:
    """What every screening needs of a video: its sampled frames (with the layout), their embeddings and
    PDQ hashes. ``sludge check`` screens this; indexing adds the file hash, thumbnails and transcript."""

    sampled: Sampled
    embeddings: np.ndarray
    pdq: list[tuple[str, int]]
    timings: dict[str, float]

    @property
    def times(self) -> list[float]:
        return [f.ts for f in self.sampled.frames]


def sample_video(
    path: str | Path,
    sampler: Sampler,
    limits: Limits = Limits(),
    *,
    layout: bool = False,
    layout_params: LayoutParams = DEFAULT_PARAMS,
) -> Sampled:
    """Open, check limits and take the sampler's frames; raises typed MediaErrors.

    With ``layout``, the same open reader also runs layout analysis (a few short
    runs of small frames); a layout failure is a warning, never a failed video.
    """
    t0 = time.perf_counter()
    with VideoReader(
        path,
        max_side=limits.max_side,
        max_file_bytes=limits.max_file_bytes,
        max_duration_s=limits.max_duration_s,
    ) as reader:
        frames = sampler.sample(reader)
        decode_s = time.perf_counter() - t0
        result, layout_s = None, 0.0
        if layout:
            t1 = time.perf_counter()
            try:
                result = analyze_layout(reader, layout_params)
            except Exception as e:  # noqa: BLE001 - layout is evidence, not a gate
                reader.log.warnings.append(f"layout analysis failed: {e}")
            layout_s = time.perf_counter() - t1
        return Sampled(reader.info, frames, list(reader.log.warnings), decode_s, result, layout_s)


class VideoIndexer:
    """Holds the loaded models; ``process`` is safe to call for many files in turn."""

    def __init__(
        self,
        encoder: Encoder | Callable[[], Encoder],
        sampler: Sampler,
        transcriber=None,  # indexer.transcribe.Transcriber | None (None: no transcripts)
        limits: Limits = Limits(),
        *,
        layout: bool = True,
        layout_params: LayoutParams = DEFAULT_PARAMS,
        thumbs_dir: Path | None = None,
    ) -> None:
        # A factory defers loading the model until a file has decoded: a corrupt upload is refused at once.
        self._encoder = encoder
        self.sampler = sampler
        self.transcriber = transcriber
        self.limits = limits
        self.layout = layout  # False: records carry layout=None (skips the analysis)
        self.layout_params = layout_params
        self.thumbs_dir = thumbs_dir  # None: no thumbnails

    @property
    def encoder(self) -> Encoder:
        if not hasattr(self._encoder, "embed_images"):  # a factory, not yet called
            self._encoder = self._encoder()
        return self._encoder

    def write_thumbnails(self, video_id: str, frames: list[Frame], timings: dict[str, float]) -> None:
        """Small JPEGs of the sampled frames for the reviewer console (when ``thumbs_dir`` is set)."""
        if self.thumbs_dir is None:
            return
        from indexer.thumbs import write_thumbnails

        t = time.perf_counter()
        write_thumbnails(self.thumbs_dir, video_id, frames)
        timings["thumbs"] = time.perf_counter() - t

    def embed_frames(self, frames: list[Frame]) -> np.ndarray:
        return self.encoder.embed_images([f.image for f in frames])

    def process(
        self,
        path: str | Path,
        *,
        video_id: str | None = None,
        source: str | None = None,
        uploaded_at: float | None = None,
    ) -> VideoRecord:
        a = self.analyse(path)  # checks the file before hashing it
        sampled = a.sampled
        t = time.perf_counter()
        vid = video_id or file_sha256(path)
        hash_s = time.perf_counter() - t
        timings = {k: a.timings[k] for k in ("decode", "layout") if k in a.timings}
        timings.update(hash=hash_s, encode=a.timings["encode"], pdq=a.timings["pdq"])
        self.write_thumbnails(vid, sampled.frames, timings)

        t = time.perf_counter()
        transcript = self.transcribe(path, sampled.info.has_audio)
        timings["transcribe"] = time.perf_counter() - t

        return self.build_record(path, vid, sampled, a.embeddings, a.pdq, transcript, timings,
                                 source=source, uploaded_at=uploaded_at)

    def analyse(self, path: str | Path) -> Analysed:
        """Sample (with the layout), embed and PDQ-hash a video: the first stage of screening."""
        timings: dict[str, float] = {}
        sampled = sample_video(
            path, self.sampler, self.limits, layout=self.layout, layout_params=self.layout_params
        )
        timings["decode"] = sampled.seconds
        if self.layout:
            timings["layout"] = sampled.layout_seconds
        self.encoder  # noqa: B018 - loads a deferred model here, outside the stage's timings
        t = time.perf_counter()
        emb = self.embed_frames(sampled.frames)
        timings["encode"] = time.perf_counter() - t
        t = time.perf_counter()
        hashes = [pdq_hash(f.image) for f in sampled.frames]
        timings["pdq"] = time.perf_counter() - t
        return Analysed(sampled, emb, hashes, timings)

    def build_record(
        self,
        path: str | Path,
        vid: str,
        sampled: Sampled,
        emb: np.ndarray,
        hashes: list[tuple[str, int]],
        transcript: Transcript,
        timings: dict[str, float],
        *,
        source: str | None = None,
        uploaded_at: float | None = None,
    ) -> VideoRecord:
        """The record of one video from its stages' outputs (shared by the sequential and overlapped paths)."""
        info = sampled.info
        return VideoRecord(
            video_id=vid,
            path=str(Path(path).resolve()),
            size_bytes=info.size_bytes,
            duration=info.duration,
            width=info.width,
            height=info.height,
            fps=info.fps,
            has_audio=info.has_audio,
            transcript=transcript,
            sampler=self.sampler.spec,
            model_id=self.encoder.model_id,
            frames=[
                FrameRecord(frame_id(vid, f.ts), vid, f.ts, emb[i], hashes[i][0], hashes[i][1])
                for i, f in enumerate(sampled.frames)
            ],
            source=source,
            uploaded_at=uploaded_at,
            indexed_at=time.time(),
            layout=sampled.layout.layout if sampled.layout is not None else None,
            layout_detail=sampled.layout.detail() if sampled.layout is not None else None,
            timings=timings,
            warnings=sampled.warnings,
        )

    def transcribe(self, path: str | Path, has_audio: bool) -> Transcript:
        if self.transcriber is None or not has_audio:
            return EMPTY_TRANSCRIPT
        try:
            return self.transcriber.transcribe(path)
        except NoAudioError:
            return EMPTY_TRANSCRIPT
