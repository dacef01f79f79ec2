"""Overlapped ingest: many videos through decode, encode, transcribe and store at once.

Each stage runs in its own threads, joined by bounded queues, so a fast stage
waits for a slow one (back-pressure) instead of piling up decoded frames, and
the slowest stage sets the pace::

    jobs ─▶ decode ×N ─▶ encode ×1 ─▶ transcribe ×M ─▶ store ×1 ─▶ results
            (check, hash,   (frames of      (Whisper, then     (``store``:
             sample, layout, several videos  the record)        one thread)
             PDQ)            per batch)

- **decode** (``decode_threads``): the caller's ``prepare`` (checks, hashing,
  "already stored?"), then sampling, layout analysis and PDQ on the same open
  reader (PyAV releases the GIL while decoding);
- **encode** (one thread; the encoder runs one batch at a time and uses its
  own intra-op threads): frames of as many queued videos as fit in the
  encoder's batch size are embedded together;
- **transcribe** (``transcribe_threads``): Whisper, then the
  :class:`VideoRecord`, built by the same :meth:`VideoIndexer.build_record`
  as the sequential path, so the records hold the same content;
- **store** (one thread): the caller's ``store``, e.g. ``history.add_video``.

A failure in any stage becomes that video's :class:`Result` (``failed``, with
the exception) and the batch goes on. Results come back as videos finish, not
in input order. Closing the iterator early (or an exception in the consumer)
stops the feeding, lets the workers drain and joins them.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from indexer.identity import file_sha256
from indexer.pdq import pdq_hash
from indexer.pipeline import Sampled, VideoIndexer, sample_video
from indexer.records import Frame, Transcript, VideoRecord

_STOP = object()  # end of a stage's input
_NO_IMAGE = np.zeros((0, 0, 3), np.uint8)  # frames keep their time once embedded; pixels are dropped


@dataclass(frozen=True)
class OverlapConfig:
    decode_threads: int = 2
    transcribe_threads: int = 1
    queue_size: int = 4  # items waiting between two stages (each holds one video's decoded frames at most)

    def __post_init__(self) -> None:
        for name in ("decode_threads", "transcribe_threads", "queue_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass
class Job:
    path: str
    video_id: str | None = None  # None: the SHA-256 of the file, computed in the decode stage
    source: str | None = None
    uploaded_at: float | None = None
    tag: Any = None  # the caller's own data, returned with the result


@dataclass
class Result:
    job: Job
    status: str  # indexed | present | failed
    record: VideoRecord | None = None  # indexed, or present as found by ``store``
    error: BaseException | None = None
    seconds: float = 0.0

    @property
    def video_id(self) -> str | None:
        return self.record.video_id if self.record is not None else self.job.video_id


@dataclass
class _Item:
    job: Job
    t0: float
    timings: dict[str, float] = field(default_factory=dict)
    sampled: Sampled | None = None
    hashes: list[tuple[str, int]] | None = None
    emb: np.ndarray | None = None
    record: VideoRecord | None = None


class OverlappedIndexer:
    """Runs a :class:`VideoIndexer`'s stages for many videos at once (see the module docstring).

    ``prepare(job) -> bool`` runs first in a decode thread: it may check the
    file and set ``job.video_id``, and returns False when the video is already
    stored (result ``present``, nothing decoded). ``store(record) -> bool``
    runs in the single store thread: False means the video was already there
    (``present``). Both are optional; without ``store`` every processed video
    is ``indexed`` (with its record). Both may be called while other stages
    run: guard shared stores with a lock of your own.
    """

    def __init__(
        self,
        indexer: VideoIndexer,
        config: OverlapConfig = OverlapConfig(),
        *,
        prepare: Callable[[Job], bool] | None = None,
        store: Callable[[VideoRecord], bool] | None = None,
    ) -> None:
        self.indexer = indexer
        self.config = config
        self.prepare = prepare
        self.store = store

    # -- the run ---------------------------------------------------------------------

    def run(self, jobs: Iterable[Job | str | Path]) -> Iterator[Result]:
        cfg = self.config
        stop = threading.Event()
        q_decode: queue.Queue = queue.Queue(cfg.queue_size)
        q_encode: queue.Queue = queue.Queue(cfg.queue_size)
        q_transcribe: queue.Queue = queue.Queue(cfg.queue_size)
        q_store: queue.Queue = queue.Queue(cfg.queue_size)
        out: queue.Queue = queue.Queue()  # unbounded: results are small and the consumer is the caller
        feed_error: list[BaseException] = []

        def fail(item: _Item, e: BaseException) -> None:
            out.put(Result(item.job, "failed", error=e, seconds=time.perf_counter() - item.t0))

        def feed() -> None:
            try:
                for j in jobs:
                    if stop.is_set():
                        break
                    job = j if isinstance(j, Job) else Job(str(j))
                    q_decode.put(_Item(job, 0.0))
            except BaseException as e:  # noqa: BLE001 - reported by run() after the drain
                feed_error.append(e)
            finally:
                q_decode.put(_STOP)

        threads = [threading.Thread(target=feed, name="ingest-feed", daemon=True)]
        threads += _stage("ingest-decode", cfg.decode_threads, q_decode, q_encode, stop,
                          lambda it: self._decode(it, q_encode, out), fail)
        threads += _stage("ingest-encode", 1, q_encode, q_transcribe, stop, None, fail,
                          batch=lambda first: self._encode_batch(first, q_encode, q_transcribe, stop, fail))
        threads += _stage("ingest-transcribe", cfg.transcribe_threads, q_transcribe, q_store, stop,
                          lambda it: (self._transcribe(it), q_store.put(it)), fail)
        threads += _stage("ingest-store", 1, q_store, out, stop, lambda it: out.put(self._store(it)), fail)
        for t in threads:
            t.start()
        try:
            while True:
                r = out.get()
                if r is _STOP:
                    break
                yield r
            if feed_error:
                raise feed_error[0]
        finally:
            stop.set()
            for t in threads:
                t.join()

    # -- stages ----------------------------------------------------------------------

    def _decode(self, item: _Item, q_encode: queue.Queue, out: queue.Queue) -> None:
        ix, job = self.indexer, item.job
        item.t0 = time.perf_counter()
        if self.prepare is not None and not self.prepare(job):
            out.put(Result(job, "present", seconds=time.perf_counter() - item.t0))
            return
        sampled = sample_video(job.path, ix.sampler, ix.limits, layout=ix.layout, layout_params=ix.layout_params)
        item.timings["decode"] = sampled.seconds
        if ix.layout:
            item.timings["layout"] = sampled.layout_seconds
        t = time.perf_counter()
        if job.video_id is None:
            job.video_id = file_sha256(job.path)
        item.timings["hash"] = time.perf_counter() - t
        t = time.perf_counter()
        item.hashes = [pdq_hash(f.image) for f in sampled.frames]
        item.timings["pdq"] = time.perf_counter() - t
        ix.write_thumbnails(job.video_id, sampled.frames, item.timings)
        item.sampled = sampled
        q_encode.put(item)

    def _encode_batch(self, first: _Item, q_encode: queue.Queue, q_next: queue.Queue,
                      stop: threading.Event, fail: Callable[[_Item, BaseException], None]) -> bool:
        """Embed ``first`` with the videos queued behind it, up to the encoder's batch size.

        Returns True when the end of the input was taken off the queue meanwhile.
        """
        items, n = [first], len(first.sampled.frames)
        ended = False
        limit = getattr(self.indexer.encoder, "batch_size", 16)
        while n < limit:
            try:
                nxt = q_encode.get_nowait()
            except queue.Empty:
                break
            if nxt is _STOP:
                ended = True
                break
            items.append(nxt)
            n += len(nxt.sampled.frames)
        if stop.is_set():
            return ended
        try:
            embedded = self._embed(items)
        except Exception:  # noqa: BLE001 - one bad video must not fail its batch-mates: retry one by one
            embedded = []
            for it in items:
                try:
                    embedded += self._embed([it])
                except Exception as e:  # noqa: BLE001
                    fail(it, e)
        for it in embedded:
            q_next.put(it)
        return ended

    def _embed(self, items: list[_Item]) -> list[_Item]:
        frames = [f.image for it in items for f in it.sampled.frames]
        t = time.perf_counter()
        emb = self.indexer.encoder.embed_images(frames) if frames else None
        spent = time.perf_counter() - t
        at = 0
        for it in items:
            k = len(it.sampled.frames)
            it.emb = emb[at: at + k] if emb is not None else np.zeros((0, self.indexer.encoder.dim), np.float32)
            at += k
            it.timings["encode"] = spent * k / max(1, len(frames))  # the batch's time, shared by frame count
            it.sampled = replace(it.sampled, frames=[Frame(f.ts, _NO_IMAGE) for f in it.sampled.frames])
        return items

    def _transcribe(self, item: _Item) -> None:
        job, sampled = item.job, item.sampled
        t = time.perf_counter()
        transcript: Transcript = self.indexer.transcribe(job.path, sampled.info.has_audio)
        item.timings["transcribe"] = time.perf_counter() - t
        item.record = self.indexer.build_record(
            job.path, job.video_id, sampled, item.emb, item.hashes, transcript, item.timings,
            source=job.source, uploaded_at=job.uploaded_at,
        )
        item.sampled = item.emb = item.hashes = None

    def _store(self, item: _Item) -> Result:
        record = item.record
        if self.store is None:
            added = True
        else:
            t = time.perf_counter()
            added = self.store(record)
            record.timings["store"] = time.perf_counter() - t
        return Result(item.job, "indexed" if added else "present", record=record,
                      seconds=time.perf_counter() - item.t0)


def _stage(name: str, n: int, inbox: queue.Queue, outbox: queue.Queue, stop: threading.Event,
           work: Callable[[_Item], Any] | None, fail: Callable[[_Item, BaseException], None], *,
           batch: Callable[[_Item], bool] | None = None) -> list[threading.Thread]:
    """``n`` threads taking items off ``inbox``; the last one to finish passes the end marker on.

    Every item reaches ``work`` (or ``batch``) unless ``stop`` is set, when the
    rest are dropped; an exception fails that item only.
    """
    left = [n]
    lock = threading.Lock()

    def loop() -> None:
        try:
            while True:
                item = inbox.get()
                if item is _STOP:
                    inbox.put(_STOP)  # for the siblings
                    return
                if stop.is_set():
                    continue
                try:
                    if batch is not None:
                        if batch(item):
                            inbox.put(_STOP)
                            return
                    else:
                        work(item)
                except Exception as e:  # noqa: BLE001 - the item fails, the batch goes on
                    fail(item, e)
        finally:
            with lock:
                left[0] -= 1
                last = left[0] == 0
            if last:
                outbox.put(_STOP)

    return [threading.Thread(target=loop, name=f"{name}-{i}", daemon=True) for i in range(n)]
