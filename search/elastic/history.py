"""The frame history on Elasticsearch: frames with embeddings behind a write alias, videos, sweeps.

Index design (see README, "Frame history on Elasticsearch"):

- ``{prefix}`` is a write alias over time-based frame indices ``{prefix}-000001``,
  ``-000002``… created from the index template ``{prefix}-frames`` and rolled
  over by document count or age. One document per frame, id = frame id
  (``<video sha256>@<ms>``): re-indexing overwrites, never duplicates.
- Each frame carries the small per-video fields that searches pre-filter on
  inside the kNN clause (upload time, layout, source, decision, model id).
  The transcript and the rest of the video's metadata live once per video in
  ``{prefix}-videos``; transcripts are matched there (BM25) and narrow the kNN
  search through a ``video_id`` filter.
- The video document is written after all its frames succeeded: it is the
  commit marker ``has_video`` reads, so a half-written video is re-indexed.
- ``{prefix}-sweeps`` holds sweep runs (state, cursor) and candidates (one per
  policy and video).

Every score leaving this module is a cosine in [-1, 1]: Elasticsearch reports
``(1 + cos) / 2`` and :func:`search.scores.from_es_cosine` converts it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from indexer.errors import QueryError
from indexer.records import FrameRecord, Transcript, VideoRecord
from search.elastic.outbox import Outbox
from search.errors import ModelMismatchError, NotFoundError, StoreError
from search.history import (
    NO_DECISION,
    FrameHistory,
    FramePage,
    HistoryFilter,
    SweepCandidate,
    merge_candidate,
)
from search.scores import from_es_cosine
from search.types import FrameHit, StoredVideo, TranscriptHit

log = logging.getLogger(__name__)

MAX_K = 10_000  # Elasticsearch's ceiling for k and num_candidates
DOWN_BACKOFF_S = 5.0  # after a failed write, go straight to the outbox for this long


class ElasticConfig(Protocol):
    """What this backend reads from its settings (ops.config.ElasticSettings satisfies it)."""

    index_prefix: str
    index_type: str  # int8_hnsw | hnsw
    hnsw_m: int
    hnsw_ef_construction: int
    num_candidates: int
    rescore_oversample: float
    shards: int
    replicas: int
    rollover_max_docs: int
    rollover_max_age: str
    bulk_chunk: int
    bulk_threads: int
    request_timeout_s: float
    retries: int


class ServerUnavailable(StoreError):
    """Elasticsearch cannot take writes right now (down, overloaded or read-only)."""


def _ms(t: float | None) -> int | None:
    return None if t is None else int(round(t * 1000))


def _s(ms: Any) -> float | None:
    return None if ms is None else float(ms) / 1000.0


class ElasticHistory(FrameHistory):
    def __init__(self, url: str, settings: ElasticConfig, *, model_id: str | None, dim: int | None,
                 outbox_dir: Path, prefix: str | None = None) -> None:
        try:
            from elasticsearch import Elasticsearch
        except ImportError:  # pragma: no cover - the es extra is part of the install
            raise StoreError("the Elasticsearch client is not installed: pip install 'sludge[es]'") from None
        self.url = url
        self.settings = settings
        self._want_model, self._want_dim = model_id, dim
        self._model: str | None = None
        self._dim: int | None = None
        p = prefix or settings.index_prefix  # another generation (search/generations.py) has its own prefix
        self.alias = p
        self.template = f"{p}-frames"
        self.lifecycle = f"{p}-frames"  # ILM policy: rolls the write index over by size and age
        self.first_index = f"{p}-000001"
        self.videos_index = f"{p}-videos"
        self.sweeps_index = f"{p}-sweeps"
        self.outbox = Outbox(Path(outbox_dir) / _safe(url) / p)
        try:  # several times faster on 512-float vectors than the json module
            from elasticsearch.serializer import OrjsonSerializer

            extra = {"serializer": OrjsonSerializer()}
        except ImportError:
            extra = {}
        self.client = Elasticsearch(
            url, request_timeout=settings.request_timeout_s, max_retries=min(settings.retries, 2),
            retry_on_status=(502, 503, 504), retry_on_timeout=True, **extra,
        )
        self._ready = False
        self._dirty = False
        self._down_until = 0.0
        self._written_since_rollover = 0
        self._notes: list[str] = []
        self._queued = 0
        self._queue_reasons: list[str] = []

    # -- identity ------------------------------------------------------------------------
    @property
    def model_id(self) -> str | None:  # type: ignore[override]
        return self._model or self._want_model

    @property
    def dim(self) -> int | None:  # type: ignore[override]
        return self._dim or self._want_dim

    def __repr__(self) -> str:
        return f"ElasticHistory({self.url!r}, alias={self.alias!r})"

    # -- errors ----------------------------------------------------------------------------
    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        from elasticsearch import ApiError, SerializationError, TransportError

        try:
            yield
        except (StoreError, QueryError):
            raise
        except SerializationError as e:  # raised by the client before anything is sent: the input, not the server
            raise QueryError(f"the request for {what} cannot be encoded ({e}); check the filter values") from None
        except TransportError as e:
            raise ServerUnavailable(
                f"Elasticsearch at {self.url} is unreachable while {what} ({type(e).__name__}); start it "
                "(`sludge services start es`) or unset SLUDGE_ES_URL to use the embedded history") from None
        except ApiError as e:
            status = getattr(e, "status_code", None) or getattr(getattr(e, "meta", None), "status", None)
            reason = _reason(e)
            if status == 400:
                raise QueryError(f"Elasticsearch refused the request while {what}: {reason}") from None
            if status in (429, 503) or "cluster_block" in reason:
                raise ServerUnavailable(f"Elasticsearch at {self.url} cannot serve {what} now: {reason}") from None
            raise StoreError(f"Elasticsearch error while {what} (HTTP {status}): {reason}") from None

    # -- setup -------------------------------------------------------------------------------
    def _mappings(self, dim: int, model_id: str) -> dict:
        s = self.settings
        return {
            "dynamic": "strict",
            "_meta": {"model_id": model_id, "dim": dim, "created_by": "sludge"},
            "properties": {
                "frame_id": {"type": "keyword"},
                "video_id": {"type": "keyword"},
                "ts": {"type": "float"},
                "pdq": {"type": "keyword", "index": False},
                "pdq_quality": {"type": "short", "index": False},
                "embedding": {
                    "type": "dense_vector", "dims": dim, "index": True, "similarity": "cosine",
                    "index_options": {"type": s.index_type, "m": s.hnsw_m,
                                      "ef_construction": s.hnsw_ef_construction},
                },
                "uploaded_at": {"type": "date", "format": "epoch_millis"},
                "indexed_at": {"type": "date", "format": "epoch_millis"},
                "layout": {"type": "keyword"},
                "source": {"type": "keyword"},
                "decision": {"type": "keyword"},
                "model_id": {"type": "keyword"},
            },
        }

    def _video_mappings(self) -> dict:
        return {
            "dynamic": "strict",
            "properties": {
                "video_id": {"type": "keyword"}, "path": {"type": "keyword"},
                "size_bytes": {"type": "long"}, "duration": {"type": "float"},
                "width": {"type": "integer"}, "height": {"type": "integer"}, "fps": {"type": "float"},
                "has_audio": {"type": "boolean"}, "has_speech": {"type": "boolean"},
                "language": {"type": "keyword"},
                "transcript": {"type": "text"},
                "transcript_detail": {"type": "object", "enabled": False},
                "sampler": {"type": "keyword"}, "model_id": {"type": "keyword"},
                "frame_count": {"type": "integer"},
                "layout": {"type": "keyword"}, "layout_detail": {"type": "object", "enabled": False},
                "source": {"type": "keyword"}, "decision": {"type": "keyword"},
                "uploaded_at": {"type": "date", "format": "epoch_millis"},
                "indexed_at": {"type": "date", "format": "epoch_millis"},
                "warnings": {"type": "keyword", "index": False},
            },
        }

    def _sweep_mappings(self) -> dict:
        return {
            "dynamic": False,
            "properties": {
                "kind": {"type": "keyword"}, "policy": {"type": "keyword"}, "video_id": {"type": "keyword"},
                "run_id": {"type": "keyword"}, "score": {"type": "float"},
            },
        }

    def _index_settings(self) -> dict:
        return {"number_of_shards": self.settings.shards, "number_of_replicas": self.settings.replicas}

    def _ensure(self, create: bool) -> bool:
        """Check (and with ``create``, make) the indices; False when there is no history yet."""
        if self._ready:
            return True
        c = self.client
        with self._errors("opening the frame history"):
            if c.indices.exists_alias(name=self.alias):
                self._check_existing()
            elif c.indices.exists(index=self.alias):
                raise StoreError(
                    f"Elasticsearch index {self.alias!r} exists but is not a sludge write alias (created by "
                    "something else?); choose another SLUDGE_ELASTIC__INDEX_PREFIX or remove that index")
            else:
                if not create or self._want_dim is None or self._want_model is None:
                    return False
                self._create()
            for name, mappings in ((self.videos_index, self._video_mappings()),
                                   (self.sweeps_index, self._sweep_mappings())):
                if not c.indices.exists(index=name):
                    if not create:
                        continue
                    try:
                        c.indices.create(index=name, settings=self._index_settings(), mappings=mappings)
                    except Exception as e:  # created by a concurrent process
                        if "resource_already_exists" not in str(e):
                            raise
        self._ready = True
        return True

    def _create(self) -> None:
        c, dim, model = self.client, int(self._want_dim), str(self._want_model)
        mappings = self._mappings(dim, model)
        # Index lifecycle management rolls the archive over on its own (checked every poll interval, 10 min
        # by default); the writer also checks every 10,000 frames, so a fast bulk load cannot overshoot far.
        c.ilm.put_lifecycle(name=self.lifecycle, policy={"phases": {"hot": {"actions": {"rollover": {
            "max_docs": self.settings.rollover_max_docs, "max_age": self.settings.rollover_max_age,
            "max_primary_shard_size": "50gb"}}}}, "_meta": {"created_by": "sludge"}})
        c.indices.put_index_template(
            name=self.template, index_patterns=[f"{self.alias}-0*"], priority=500,
            # No explicit refresh_interval: idle shards then skip periodic refreshes, so a bulk load builds
            # few large segments instead of one tiny HNSW graph a second that merges must rebuild.
            template={"settings": {**self._index_settings(), "index.lifecycle.name": self.lifecycle,
                                   "index.lifecycle.rollover_alias": self.alias},
                      "mappings": mappings},
            meta={"model_id": model, "dim": dim, "created_by": "sludge"},
        )
        try:
            c.indices.create(index=self.first_index, aliases={self.alias: {"is_write_index": True}})
        except Exception as e:
            if "resource_already_exists" not in str(e):
                raise
        self._model, self._dim = model, dim
        self._check_existing()

    def _check_existing(self) -> None:
        c = self.client
        info = c.indices.get_alias(name=self.alias).body
        write = [i for i, a in info.items() if a["aliases"][self.alias].get("is_write_index")] or sorted(info)[-1:]
        mapping = c.indices.get_mapping(index=write[0]).body[write[0]]["mappings"]
        emb = mapping.get("properties", {}).get("embedding", {})
        meta = mapping.get("_meta", {})
        if emb.get("type") != "dense_vector":
            raise StoreError(
                f"Elasticsearch index {write[0]} (alias {self.alias}) has no dense_vector 'embedding' field "
                f"(mapping conflict: {emb.get('type') or 'missing'}); it was not created by sludge. Choose another "
                "SLUDGE_ELASTIC__INDEX_PREFIX")
        have_model, have_dim = meta.get("model_id"), int(emb.get("dims") or meta.get("dim") or 0)
        want_model, want_dim = self._want_model, self._want_dim
        if (want_model is not None and have_model is not None and have_model != want_model) or (
                want_dim is not None and have_dim and have_dim != want_dim):
            raise ModelMismatchError(
                f"the frame history {self.alias} at {self.url} holds embeddings of {have_model} ({have_dim}-d); "
                f"this run uses {want_model} ({want_dim}-d). Use the same encoder settings, move the history to the "
                "new model with `sludge migrate`, or use another index prefix (SLUDGE_ELASTIC__INDEX_PREFIX)")
        self._model, self._dim = have_model, have_dim or None

    # -- documents -------------------------------------------------------------------------------
    def _docs(self, record: VideoRecord) -> dict:
        if not record.frames:
            raise StoreError(f"{record.path}: no frames to store")
        emb = record.embeddings
        if not np.all(np.isfinite(emb)):
            raise StoreError(f"{record.path}: embeddings hold NaN or infinite values; not stored")
        now = time.time()
        uploaded = record.uploaded_at or record.indexed_at or now
        indexed = record.indexed_at or now
        t = record.transcript
        video = {
            "video_id": record.video_id, "path": record.path, "size_bytes": record.size_bytes,
            "duration": record.duration, "width": record.width, "height": record.height, "fps": record.fps,
            "has_audio": bool(record.has_audio), "has_speech": bool(t.has_speech), "language": t.language,
            "transcript": t.text or "", "transcript_detail": t.to_dict(), "sampler": record.sampler,
            "model_id": record.model_id, "frame_count": len(record.frames), "layout": record.layout,
            "layout_detail": record.layout_detail, "source": record.source, "decision": None,
            "uploaded_at": _ms(uploaded), "indexed_at": _ms(indexed),
            "warnings": list(getattr(record, "warnings", []) or []),
        }
        frames = [
            {
                "frame_id": f.frame_id, "video_id": record.video_id, "ts": float(f.ts), "pdq": f.pdq,
                "pdq_quality": f.pdq_quality, "embedding": emb[i],  # float32: orjson writes the shortest form
                "uploaded_at": video["uploaded_at"], "indexed_at": video["indexed_at"], "layout": record.layout,
                "source": record.source, "decision": None, "model_id": record.model_id,
            }
            for i, f in enumerate(record.frames)
        ]
        return {"video": video, "frames": frames}

    def _check_record(self, record: VideoRecord) -> None:
        dim = int(record.embeddings.shape[1]) if record.frames else None
        if self.model_id is not None and record.model_id != self.model_id or (
                self.dim is not None and dim is not None and dim != self.dim):
            raise ModelMismatchError(
                f"{record.path}: embeddings of {record.model_id} ({dim}-d) cannot go into the frame history "
                f"{self.alias}, which holds {self.model_id} ({self.dim}-d)")

    # -- writes ----------------------------------------------------------------------------------
    def add_video(self, record: VideoRecord) -> bool:
        return self.add_videos([record])[0]

    def add_videos(self, records: Iterable[VideoRecord]) -> list[bool]:
        records = list(records)
        results: list[bool] = []
        todo: list[tuple[str, dict]] = []
        position: dict[str, int] = {}
        for r in records:
            if self._want_model is None:
                self._want_model, self._want_dim = r.model_id, int(r.embeddings.shape[1]) if r.frames else None
            self._check_record(r)
            if self.outbox.has(r.video_id) or r.video_id in position:
                results.append(False)
                continue
            position[r.video_id] = len(results)
            todo.append((r.video_id, self._docs(r)))
            results.append(True)
        if not todo:
            return results
        if time.monotonic() < self._down_until:
            self._queue(todo, "Elasticsearch was unavailable moments ago")
            return results
        try:
            self._ensure(create=True)
            try:
                self._replay_outbox()
            except ServerUnavailable:
                raise
            except StoreError as e:  # a queued video the server rejects for good: say so, keep going
                self._note(f"outbox: {e}")
            present = self._existing([v for v, _ in todo])
            for v in present:
                results[position[v]] = False
            self._write([(v, d) for v, d in todo if v not in present])
        except ServerUnavailable as e:
            self._down_until = time.monotonic() + DOWN_BACKOFF_S
            try:
                stored = self._existing([v for v, _ in todo])  # frames may have landed before it failed
            except StoreError:
                stored = set()
            self._queue([(v, d) for v, d in todo if v not in stored], str(e))
        return results

    def _note(self, text: str) -> None:
        if text not in self._notes:
            self._notes.append(text)

    @property
    def notices(self) -> list[str]:
        """What the user should hear about (outbox use), one line per cause, for the CLI."""
        out = list(self._notes)
        if self._queued:
            waiting = len(self.outbox)
            why = "; ".join(self._queue_reasons[:3])
            if waiting == 0:  # the same run wrote them back once the server answered again
                out.insert(0, f"{self._queued} video(s) waited in the outbox during this run ({why}); all have "
                              "since been written to Elasticsearch")
            else:
                out.insert(0, f"{waiting} video(s) are kept in the outbox {self.outbox.dir} ({why}); they are "
                              "written to Elasticsearch on the next write or with `sludge history flush`")
        return out

    def _queue(self, todo: list[tuple[str, dict]], why: str) -> None:
        for v, d in todo:
            self.outbox.put(v, d)
        if todo:
            self._queued += len(todo)
            if why not in self._queue_reasons:
                self._queue_reasons.append(why)

    def _existing(self, video_ids: list[str]) -> set[str]:
        if not video_ids:
            return set()
        with self._errors("checking which videos are stored"):
            resp = self.client.mget(index=self.videos_index, ids=video_ids, source=False)
        return {d["_id"] for d in resp["docs"] if d.get("found")}

    def _bulk(self, actions: list[dict], what: str) -> list[tuple[str, int, str]]:
        """Stream ``actions``; every per-document failure is returned as (id, status, reason).

        With ``bulk_threads`` > 1 the chunks go out from that many threads at once: one bulk request is
        indexed by one server thread per shard, and a single synchronous stream leaves the client's
        serialization and the server's indexing taking turns. ``helpers.parallel_bulk`` would do the
        threading but has no retry on 429, so each thread runs ``streaming_bulk`` (which backs off) over
        its own chunks.
        """
        from elasticsearch import ConnectionError as EsConnectionError
        from elasticsearch import ConnectionTimeout, helpers
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

        size = self.settings.bulk_chunk

        def run(part: list[dict]) -> list[tuple[str, int, str]]:
            out = []
            for ok, item in helpers.streaming_bulk(
                self.client, part, chunk_size=size,
                max_retries=self.settings.retries, initial_backoff=0.2, max_backoff=2.0,
                raise_on_error=False, raise_on_exception=False,
            ):
                if not ok:
                    info = next(iter(item.values()))
                    out.append((str(info.get("_id")), int(info.get("status") or 0), _reason(info.get("error"))))
            return out

        threads = min(self.settings.bulk_threads, -(-len(actions) // size))
        retrying = Retrying(
            retry=retry_if_exception_type((EsConnectionError, ConnectionTimeout)),
            stop=stop_after_attempt(2), wait=wait_exponential(multiplier=0.5, max=2), reraise=True,
        )
        with self._errors(what):
            for attempt in retrying:
                with attempt:
                    if threads <= 1:
                        return run(actions)
                    from concurrent.futures import ThreadPoolExecutor

                    parts = [actions[i:i + size] for i in range(0, len(actions), size)]
                    with ThreadPoolExecutor(threads, thread_name_prefix="es-bulk") as pool:
                        return [f for fs in pool.map(run, parts) for f in fs]
        return []

    def _write(self, todo: list[tuple[str, dict]]) -> None:
        if not todo:
            return
        frames = [{"_op_type": "index", "_index": self.alias, "_id": f["frame_id"], "_source": f}
                  for _, d in todo for f in d["frames"]]
        failures = self._bulk(frames, "writing frames")
        failed_videos: dict[str, list[str]] = {}
        unavailable = []
        for fid, status, reason in failures:
            vid = fid.split("@", 1)[0]
            failed_videos.setdefault(vid, []).append(f"frame {fid}: {reason} (HTTP {status})")
            if status in (429, 503) or status >= 500 or "cluster_block" in reason:
                unavailable.append(reason)
        ok = [(v, d) for v, d in todo if v not in failed_videos]
        vfail = self._bulk(
            [{"_op_type": "index", "_index": self.videos_index, "_id": v, "_source": d["video"]} for v, d in ok],
            "writing videos")
        for vid, status, reason in vfail:
            failed_videos.setdefault(vid, []).append(f"video {vid}: {reason} (HTTP {status})")
            if status in (429, 503) or status >= 500 or "cluster_block" in reason:
                unavailable.append(reason)
        self._dirty = True
        self._written_since_rollover += len(frames)
        if self._written_since_rollover >= 10_000:
            self.rollover()
        if not failed_videos:
            return
        if unavailable:
            failed = [(v, d) for v, d in todo if v in failed_videos]
            self._queue(failed, f"Elasticsearch refuses writes: {unavailable[0]}")
            if any("read_only" in r or "flood" in r or "cluster_block" in r for r in unavailable):
                self._down_until = time.monotonic() + DOWN_BACKOFF_S
            return
        lines = [line for v in failed_videos for line in failed_videos[v]]
        raise StoreError(
            f"Elasticsearch rejected {len(lines)} document(s) of {len(failed_videos)} video(s), which were not "
            f"recorded as indexed (index them again after fixing the cause): " + "; ".join(lines[:5])
            + (f"; … {len(lines) - 5} more" if len(lines) > 5 else ""))

    def _replay_outbox(self) -> int:
        written = 0
        batch: list[tuple[str, dict]] = []
        for vid, entry in self.outbox.entries():
            batch.append((vid, {"video": entry["video"], "frames": entry["frames"]}))
            if len(batch) >= 50:
                written += self._flush_batch(batch)
                batch = []
        if batch:
            written += self._flush_batch(batch)
        return written

    def _flush_batch(self, batch: list[tuple[str, dict]]) -> int:
        present = self._existing([v for v, _ in batch])
        for v in present:
            self.outbox.remove(v)
        todo = [(v, d) for v, d in batch if v not in present]
        pending_before = {v for v, _ in todo}
        self._write(todo)  # a video that fails again is re-queued (same file) and raises or stays
        done = self._existing(list(pending_before))
        for v in done:
            self.outbox.remove(v)
        return len(done)

    def pending(self) -> int:
        return len(self.outbox)

    def flush_pending(self) -> int:
        if not len(self.outbox):
            return 0
        self._ensure(create=True)
        n = self._replay_outbox()
        self._down_until = 0.0
        return n

    def set_decision(self, video_id: str, decision: str | None) -> None:
        if not self._ensure(create=False):
            raise NotFoundError(f"video {video_id} is not in the frame history {self.alias} (it is empty)")
        from elasticsearch import NotFoundError as EsNotFound

        with self._errors(f"recording the decision of video {video_id}"):
            try:
                self.client.update(index=self.videos_index, id=video_id, doc={"decision": decision}, refresh=True)
            except EsNotFound:
                raise NotFoundError(f"video {video_id} is not in the frame history {self.alias}") from None
            # update_by_query finds frames by searching: frames bulk-written moments ago (a worker decides
            # right after indexing) are invisible to it until a refresh, and would keep no decision.
            self.client.indices.refresh(index=self.alias)
            self.client.update_by_query(
                index=self.alias, query={"term": {"video_id": video_id}}, conflicts="proceed", refresh=True,
                script={"source": "ctx._source.decision = params.d", "params": {"d": decision}},
            )

    def rollover(self) -> bool:
        """Roll the write alias over to a new index when the configured size or age is reached."""
        self._written_since_rollover = 0
        with self._errors("rolling the frame index over"):
            self.client.indices.refresh(index=self.alias)  # max_docs counts refreshed documents
            resp = self.client.indices.rollover(
                alias=self.alias,
                conditions={"max_docs": self.settings.rollover_max_docs, "max_age": self.settings.rollover_max_age},
            )
        return bool(resp.get("rolled_over"))

    def refresh(self) -> None:
        if self._ensure(create=False):
            with self._errors("refreshing"):
                self.client.indices.refresh(index=f"{self.alias},{self.videos_index},{self.sweeps_index}",
                                            ignore_unavailable=True)
        self._dirty = False

    def _before_read(self) -> bool:
        if not self._ensure(create=False):
            return False
        if self._dirty:
            self.refresh()
        return True

    # -- reads -------------------------------------------------------------------------------------
    def has_video(self, video_id: str) -> bool:
        if self.outbox.has(video_id):
            return True
        if not self._ensure(create=False):
            return False
        from elasticsearch import ApiError, TransportError

        try:
            return bool(self.client.exists(index=self.videos_index, id=video_id))
        except (TransportError, ApiError):
            return False  # unreachable: indexing will queue it in the outbox if it is new

    def get_videos(self, video_ids: list[str]) -> dict[str, StoredVideo]:
        if not video_ids or not self._ensure(create=False):
            return {}
        with self._errors("reading videos"):
            resp = self.client.mget(index=self.videos_index, ids=list(dict.fromkeys(video_ids)))
        return {d["_id"]: _stored(d["_source"]) for d in resp["docs"] if d.get("found")}

    def _filters(self, where: HistoryFilter) -> list[dict]:
        f: list[dict] = []
        rng = {}
        if where.since is not None:
            rng["gte"] = _ms(where.since)
        if where.until is not None:
            rng["lt"] = _ms(where.until)
        if rng:
            f.append({"range": {"uploaded_at": rng}})
        if where.layouts:
            f.append({"terms": {"layout": list(where.layouts)}})
        if where.sources:
            f.append({"terms": {"source": list(where.sources)}})
        if where.decisions:
            named = [d for d in where.decisions if d != NO_DECISION]
            should: list[dict] = [{"terms": {"decision": named}}] if named else []
            if NO_DECISION in where.decisions:
                should.append({"bool": {"must_not": {"exists": {"field": "decision"}}}})
            f.append({"bool": {"should": should, "minimum_should_match": 1}})
        if where.video_ids is not None:
            f.append({"terms": {"video_id": list(where.video_ids)}})
        return f

    def _query_vector(self, vector: np.ndarray) -> list[float]:
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        if self.dim is not None and q.shape[0] != self.dim:
            raise QueryError(f"query has {q.shape[0]} dimensions; the history holds {self.dim}-d vectors")
        if not np.all(np.isfinite(q)) or not np.any(q):
            raise QueryError("the query vector is zero or holds NaN/infinite values")
        return q.tolist()

    def search_frames(
        self, vector: np.ndarray, k: int, *, since: float | None = None, until: float | None = None,
        where: HistoryFilter | None = None, num_candidates: int | None = None,
    ) -> list[FrameHit]:
        q = self._query_vector(vector)
        if not self._before_read():
            return []
        k = max(1, min(int(k), MAX_K))
        nc = max(k, min(MAX_K, num_candidates or self.settings.num_candidates))
        # Oversample, then rescore exactly: int8_hnsw ranks by quantized vectors, which blurs near
        # neighbours in a tight cluster (ES 8.12 has no rescore_vector); the float vectors are kept in the
        # index, so the top `window` approximate hits are re-ranked by their true cosine.
        window = min(nc, MAX_K, max(k, int(math.ceil(k * self.settings.rescore_oversample))))
        knn: dict[str, Any] = {"field": "embedding", "query_vector": q, "k": window, "num_candidates": nc}
        filters = self._filters(HistoryFilter.of(where, since=since, until=until))
        if filters:
            knn["filter"] = filters
        extra: dict[str, Any] = {}
        if self.settings.rescore_oversample > 0:
            extra["rescore"] = {"window_size": window, "query": {
                "query_weight": 0.0, "rescore_query_weight": 1.0,
                "rescore_query": {"script_score": {"query": {"match_all": {}}, "script": {
                    # the kNN clause's (1 + cos) / 2 scale, so one conversion serves both
                    "source": "(cosineSimilarity(params.q, 'embedding') + 1.0) / 2.0", "params": {"q": q}}}}}}
        with self._errors("searching frames"):
            resp = self.client.search(index=self.alias, knn=knn, size=k, source=["frame_id", "video_id", "ts"],
                                      **extra)
        seen, out = set(), []
        for h in resp["hits"]["hits"]:
            s = h["_source"]
            if s["frame_id"] in seen:
                continue
            seen.add(s["frame_id"])
            out.append(FrameHit(s["frame_id"], s["video_id"], float(s["ts"]), from_es_cosine(h["_score"])))
        return out

    def scan_frames(
        self, vector: np.ndarray, *, min_score: float, where: HistoryFilter | None = None,
        cursor: Any = None, page_size: int = 500,
    ) -> Iterator[tuple[list[FrameHit], Any]]:
        q = self._query_vector(vector)
        if not self._before_read():
            return
        filters = self._filters(HistoryFilter.of(where))
        inner = {"bool": {"filter": filters}} if filters else {"match_all": {}}
        # Same (1 + cos) / 2 scale as kNN, so one conversion serves both.
        query = {"script_score": {
            "query": inner,
            "script": {"source": "(cosineSimilarity(params.q, 'embedding') + 1.0) / 2.0", "params": {"q": q}},
            "min_score": (max(-1.0, float(min_score)) + 1.0) / 2.0,
        }}
        with self._errors("opening a point in time for the sweep"):
            pit = self.client.open_point_in_time(index=self.alias, keep_alive="5m").body["id"]
        try:
            while True:
                kwargs: dict[str, Any] = {}
                if cursor is not None:
                    kwargs["search_after"] = cursor
                with self._errors("scanning frames"):
                    resp = self.client.search(
                        pit={"id": pit, "keep_alive": "5m"}, query=query, size=page_size,
                        sort=[{"_score": "desc"}, {"frame_id": "asc"}], source=["frame_id", "video_id", "ts"],
                        track_total_hits=False, **kwargs)
                pit = resp.get("pit_id", pit)
                hits = resp["hits"]["hits"]
                if not hits:
                    return
                page = [FrameHit(h["_source"]["frame_id"], h["_source"]["video_id"], float(h["_source"]["ts"]),
                                 from_es_cosine(h["_score"])) for h in hits]
                cursor = hits[-1]["sort"]
                yield page, cursor
                if len(hits) < page_size:
                    return
        finally:
            try:
                self.client.close_point_in_time(id=pit)
            except Exception:
                pass  # it expires on its own

    def export_frames(self, where: HistoryFilter | None = None, *, page_size: int = 10_000) -> Iterator[FramePage]:
        if not self._before_read():
            return
        from elasticsearch import helpers

        filters = self._filters(HistoryFilter.of(where))
        query = {"query": {"bool": {"filter": filters}} if filters else {"match_all": {}}}
        seen: set[str] = set()  # a frame re-indexed across a rollover lives in two indices
        ids: list[str] = []
        vids: list[str] = []
        ts: list[float] = []
        vecs: list[list[float]] = []

        def page() -> FramePage:
            out = FramePage(list(ids), list(vids), np.asarray(ts, np.float64),
                            np.asarray(vecs, np.float32).reshape(len(ids), -1))
            ids.clear(), vids.clear(), ts.clear(), vecs.clear()
            return out

        with self._errors("exporting frames"):
            for h in helpers.scan(self.client, index=self.alias, query=query, size=min(page_size, MAX_K),
                                  _source=["frame_id", "video_id", "ts", "embedding"], scroll="5m"):
                s = h["_source"]
                if s["frame_id"] in seen:
                    continue
                seen.add(s["frame_id"])
                ids.append(s["frame_id"]), vids.append(s["video_id"]), ts.append(float(s["ts"]))
                vecs.append(s["embedding"])
                if len(ids) >= page_size:
                    yield page()
        if ids:
            yield page()

    def search_transcripts(
        self, query: str, limit: int, *, since: float | None = None, until: float | None = None,
        where: HistoryFilter | None = None,
    ) -> list[TranscriptHit]:
        if not query or not query.strip() or not any(ch.isalnum() for ch in query):
            raise QueryError(f"transcript query {query!r} has no words to search for")
        if not self._before_read():
            return []
        filters = self._filters(HistoryFilter.of(where, since=since, until=until))
        body = {"bool": {"must": {"match": {"transcript": {"query": query, "operator": "and"}}},
                         "filter": filters}}
        with self._errors("searching transcripts"):
            resp = self.client.search(
                index=self.videos_index, query=body, size=max(1, min(limit, MAX_K)), source=["video_id"],
                highlight={"fields": {"transcript": {"fragment_size": 120, "number_of_fragments": 1,
                                                     "pre_tags": ["["], "post_tags": ["]"]}}},
            )
        out = []
        for h in resp["hits"]["hits"]:
            frag = (h.get("highlight", {}).get("transcript") or [""])[0]
            out.append(TranscriptHit(h["_id"], float(h["_score"]), frag))
        return out

    # -- generations ------------------------------------------------------------------------------
    def export_videos(self, after: str | None, limit: int, *,
                      with_embeddings: bool = True) -> list[tuple[VideoRecord, str | None]]:
        if not self._before_read():
            return []
        from elasticsearch import helpers

        with self._errors("exporting videos"):
            kw = {"search_after": [after]} if after else {}
            resp = self.client.search(index=self.videos_index, query={"match_all": {}}, size=min(limit, MAX_K),
                                      sort=[{"video_id": "asc"}], **kw)
            videos = [h["_source"] for h in resp["hits"]["hits"]]
            if not videos:
                return []
            fields = ["frame_id", "video_id", "ts", "pdq", "pdq_quality"] + (["embedding"] if with_embeddings else [])
            frames: dict[str, dict[str, dict]] = {}
            for h in helpers.scan(self.client, index=self.alias, _source=fields, size=MAX_K, scroll="2m",
                                  query={"query": {"terms": {"video_id": [v["video_id"] for v in videos]}}}):
                f = h["_source"]
                frames.setdefault(f["video_id"], {})[f["frame_id"]] = f  # one copy across a rollover
        dim = self.dim or 0
        out = []
        for v in videos:
            fr = sorted(frames.get(v["video_id"], {}).values(), key=lambda f: f["ts"])
            recs = [FrameRecord(f["frame_id"], v["video_id"], float(f["ts"]),
                                np.asarray(f["embedding"], np.float32) if with_embeddings
                                else np.zeros(dim, np.float32), f.get("pdq"), f.get("pdq_quality")) for f in fr]
            out.append((VideoRecord(
                video_id=v["video_id"], path=v["path"], size_bytes=v.get("size_bytes") or 0,
                duration=v.get("duration") or 0.0, width=v.get("width") or 0, height=v.get("height") or 0,
                fps=v.get("fps"), has_audio=bool(v.get("has_audio")),
                transcript=Transcript.from_dict(v["transcript_detail"]) if v.get("transcript_detail")
                else Transcript(text=v.get("transcript") or ""),
                sampler=v.get("sampler") or "", model_id=v.get("model_id") or "", frames=recs,
                source=v.get("source"), uploaded_at=_s(v.get("uploaded_at")), indexed_at=_s(v.get("indexed_at")),
                layout=v.get("layout"), layout_detail=v.get("layout_detail"),
                warnings=list(v.get("warnings") or [])), v.get("decision")))
        return out

    def sweep_records(self) -> tuple[dict[str, dict], list[SweepCandidate]]:
        if not self._ensure(create=False):
            return {}, []
        from elasticsearch import helpers

        runs: dict[str, dict] = {}
        cands: list[SweepCandidate] = []
        with self._errors("reading sweep records"):
            if not self.client.indices.exists(index=self.sweeps_index):
                return {}, []
            for h in helpers.scan(self.client, index=self.sweeps_index, query={"query": {"match_all": {}}}):
                d = h["_source"]
                if d.get("kind") == "run":
                    runs[d["run_id"]] = d["state"]
                elif d.get("kind") == "candidate":
                    cands.append(SweepCandidate.from_dict(d))
        return runs, cands

    def drop(self) -> None:
        c = self.client
        with self._errors("deleting a generation"):
            c.indices.delete(index=f"{self.alias}-0*,{self.videos_index},{self.sweeps_index}",
                             ignore_unavailable=True, allow_no_indices=True)
            for fn, name in ((c.indices.delete_index_template, self.template),
                             (c.ilm.delete_lifecycle, self.lifecycle)):
                try:
                    fn(name=name)
                except Exception as e:  # already gone
                    if "not_found" not in str(e) and "resource_not_found" not in str(e):
                        raise
        self._ready = False
        self.close()

    # -- sweeps --------------------------------------------------------------------------------
    def sweep_state(self, run_id: str) -> dict | None:
        if not self._ensure(create=False):
            return None
        from elasticsearch import NotFoundError as EsNotFound

        with self._errors("reading a sweep's state"):
            try:
                return self.client.get(index=self.sweeps_index, id=f"run:{run_id}")["_source"]["state"]
            except EsNotFound:
                return None

    def save_sweep_state(self, run_id: str, state: dict) -> None:
        self._ensure(create=True)
        with self._errors("saving a sweep's state"):
            self.client.index(index=self.sweeps_index, id=f"run:{run_id}",  # read back by id: realtime
                              document={"kind": "run", "run_id": run_id, "policy": state.get("policy"),
                                        "state": state})

    def upsert_candidates(self, candidates: list[SweepCandidate]) -> int:
        if not candidates:
            return 0
        self._ensure(create=True)
        ids = [f"cand:{c.policy}:{c.video_id}" for c in candidates]
        with self._errors("reading sweep candidates"):
            resp = self.client.mget(index=self.sweeps_index, ids=ids)
        old = {d["_id"]: SweepCandidate.from_dict(d["_source"]) for d in resp["docs"] if d.get("found")}
        merged, new = {}, 0
        for i, c in zip(ids, candidates):
            prev = merged.get(i) or old.get(i)
            new += prev is None and i not in merged
            merged[i] = merge_candidate(prev, c)
        actions = [{"_op_type": "index", "_index": self.sweeps_index, "_id": i,
                    "_source": {"kind": "candidate", **c.to_dict()}} for i, c in merged.items()]
        failures = self._bulk(actions, "writing sweep candidates")
        if failures:
            raise StoreError(f"{len(failures)} sweep candidate(s) were not recorded: "
                             + "; ".join(f"{i}: {r}" for i, _, r in failures[:5]))
        with self._errors("refreshing sweep candidates"):
            self.client.indices.refresh(index=self.sweeps_index)
        return new

    def sweep_candidates(self, policy: str, *, limit: int | None = None) -> list[SweepCandidate]:
        if not self._ensure(create=False):
            return []
        from elasticsearch import helpers

        query = {"bool": {"filter": [{"term": {"kind": "candidate"}}, {"term": {"policy": policy}}]}}
        with self._errors("reading sweep candidates"):
            if limit is not None and limit <= MAX_K:
                resp = self.client.search(index=self.sweeps_index, query=query, size=limit,
                                          sort=[{"score": "desc"}, {"video_id": "asc"}])
                docs = [h["_source"] for h in resp["hits"]["hits"]]
            else:
                docs = [h["_source"] for h in helpers.scan(self.client, index=self.sweeps_index, query={"query": query})]
                docs.sort(key=lambda d: (-d["score"], d["video_id"]))
        return [SweepCandidate.from_dict(d) for d in docs]

    # -- stats -----------------------------------------------------------------------------------
    def stats(self) -> dict:
        out: dict[str, Any] = {"backend": "elasticsearch", "location": self.url, "alias": self.alias,
                               "pending_outbox": self.pending()}
        if not self._ensure(create=False):
            return {**out, "videos": 0, "frames": 0, "documents": 0, "bytes_on_disk": 0, "segments": 0,
                    "model_ids": [], "indices": {}}
        with self._errors("reading statistics"):
            self.refresh()
            names = f"{self.alias},{self.videos_index},{self.sweeps_index}"
            st = self.client.indices.stats(index=names, metric="docs,store,segments").body
            agg = self.client.search(index=self.alias, size=0, aggs={
                "models": {"terms": {"field": "model_id", "size": 50}},
                "videos": {"cardinality": {"field": "video_id"}},
            })
            videos = self.client.count(index=self.videos_index)["count"]
            frames = self.client.count(index=self.alias)["count"]
        indices = {
            name: {"docs": i["primaries"]["docs"]["count"], "bytes": i["total"]["store"]["size_in_bytes"],
                   "segments": i["primaries"]["segments"]["count"]}
            for name, i in sorted(st["indices"].items())
        }
        return {
            **out,
            "videos": videos,
            "frames": frames,
            "videos_with_frames": agg["aggregations"]["videos"]["value"],
            "documents": st["_all"]["primaries"]["docs"]["count"],
            "bytes_on_disk": st["_all"]["total"]["store"]["size_in_bytes"],
            "segments": st["_all"]["primaries"]["segments"]["count"],
            "model_ids": [b["key"] for b in agg["aggregations"]["models"]["buckets"]],
            "indices": indices,
        }

    def force_merge(self, max_segments: int = 1) -> None:
        with self._errors("force-merging"):
            self.client.indices.forcemerge(index=self.alias, max_num_segments=max_segments, request_timeout=3600)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass


def _stored(d: dict) -> StoredVideo:
    return StoredVideo(
        video_id=d["video_id"], path=d["path"], duration=float(d.get("duration") or 0.0),
        width=int(d.get("width") or 0), height=int(d.get("height") or 0), frame_count=int(d.get("frame_count") or 0),
        transcript=d.get("transcript") or "", has_speech=bool(d.get("has_speech")), language=d.get("language"),
        model_id=d.get("model_id") or "", sampler=d.get("sampler") or "", indexed_at=_s(d.get("indexed_at")) or 0.0,
        uploaded_at=_s(d.get("uploaded_at")) or 0.0, layout=d.get("layout"), source=d.get("source"),
        decision=d.get("decision"), layout_detail=d.get("layout_detail") or None,
    )


def _reason(err: Any) -> str:
    """A one-line reason from an Elasticsearch error body or exception."""
    body = getattr(err, "body", err)
    if isinstance(body, dict):
        e = body.get("error", body)
        if isinstance(e, dict):
            reason = e.get("reason") or e.get("type") or str(e)
            cause = e.get("caused_by") or {}
            if isinstance(cause, dict) and cause.get("reason") and cause.get("reason") != reason:
                reason = f"{reason}: {cause['reason']}"
            kind = e.get("type")
            return f"{kind}: {reason}" if kind and kind not in reason else str(reason)
        return str(e)
    return str(err)[:300]


def _safe(url: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in url.split("://", 1)[-1])[:80]
