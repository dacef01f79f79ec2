"""faiss over a history's exported frame embeddings: exact or IVF, on GPU where faiss-gpu sees one.

The history's own search answers queries through its store (SQLite + an exact
faiss index kept in step, or Elasticsearch's HNSW). For batch sweeps (many
queries over the whole history) and to measure approximate engines against
exact search, the embeddings are exported once (:meth:`FrameHistory.export_frames`,
optionally pre-filtered) into an in-memory faiss index:

- ``flat``: ``IndexFlatIP``, exact (inner products of unit vectors are cosines);
- ``ivf``: ``IndexIVFFlat`` with ``nlist`` about 4·sqrt(n) lists (at most n/39,
  so every list has points to train on) and ``nprobe`` lists visited per query.

With faiss-gpu (``pip install 'sludge[gpu]'`` in place of faiss-cpu) and a
CUDA device, the index is moved to every GPU (``index_cpu_to_all_gpus``);
searches with ``k`` above the GPU's selection limit, or restricted to some
videos, run on the CPU copy. :meth:`FaissEngine.search_frames` has the
history's signature, so ``history.recall(..., search=engine.search_frames)``
groups the frames into videos exactly as the default engine does. Memory:
4·dim bytes per frame (2 KB for 512-d), twice that while building.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Literal

import faiss
import numpy as np

from indexer.errors import QueryError
from search.history import FrameHistory, HistoryFilter
from search.scores import from_inner_product
from search.types import FrameHit

GPU_MAX_K = 2048  # faiss-gpu's largest k (and nprobe) per search
Kind = Literal["flat", "ivf"]


def exact_search(base: np.ndarray, queries: np.ndarray, k: int, *, gpu: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k (IndexFlatIP; on every GPU faiss sees): scores and row indices, best first.

    The ground truth the benchmarks measure approximate engines' recall against.
    """
    x = np.ascontiguousarray(base, dtype=np.float32)
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    k = min(int(k), len(x))
    if k <= 0:
        return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    if gpu and faiss.get_num_gpus() > 0 and k <= GPU_MAX_K:
        index = faiss.index_cpu_to_all_gpus(index)
    return index.search(q, k)


def auto_nlist(n: int) -> int:
    """About 4·sqrt(n) inverted lists, at most n/39 (faiss wants ≥ 39 training points per list), at least 1."""
    return max(1, min(round(4 * math.sqrt(n)), n // 39))


class FaissEngine:
    def __init__(
        self,
        vectors: np.ndarray,
        frame_ids: list[str],
        video_ids: list[str],
        ts: np.ndarray,
        *,
        kind: Kind = "flat",
        nlist: int = 0,
        nprobe: int = 16,
        gpu: bool = True,
        where: HistoryFilter | None = None,
    ) -> None:
        if kind not in ("flat", "ivf"):
            raise QueryError(f"unknown faiss index kind {kind!r}; expected 'flat' or 'ivf'")
        t0 = time.perf_counter()
        self.kind = kind
        self.where = where or HistoryFilter()
        self.frame_ids = list(frame_ids)
        self.video_ids = np.asarray(video_ids, dtype=object)
        self.ts = np.asarray(ts, dtype=np.float64)
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        n = len(self.frame_ids)
        if x.ndim != 2 or x.shape[0] != n:
            raise ValueError(f"{x.shape[0] if x.ndim == 2 else '?'} vectors for {n} frames")
        self.dim = int(x.shape[1]) if n else 0
        self.nlist = self.nprobe = 0
        self.cpu_index: faiss.Index | None = None
        self.index: faiss.Index | None = None  # what unrestricted searches use: the GPU copy where there is one
        self.device = "cpu"
        if n:
            if kind == "flat":
                self.cpu_index = faiss.IndexFlatIP(self.dim)
            else:
                self.nlist = min(nlist, n) if nlist > 0 else auto_nlist(n)
                self.nprobe = max(1, min(nprobe, self.nlist))
                quantizer = faiss.IndexFlatIP(self.dim)
                ivf = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
                ivf.train(x)
                ivf.nprobe = self.nprobe
                self._quantizer = quantizer  # the IVF index points into it: keep it alive
                self.cpu_index = ivf
            self.cpu_index.add(x)  # ids are row positions
            self.index = self.cpu_index
            if gpu and faiss.get_num_gpus() > 0:
                self.index = faiss.index_cpu_to_all_gpus(self.cpu_index)
                if kind == "ivf" and hasattr(faiss, "GpuParameterSpace"):
                    faiss.GpuParameterSpace().set_index_parameter(self.index, "nprobe", min(self.nprobe, GPU_MAX_K))
                self.device = f"gpu×{faiss.get_num_gpus()}"
        self.build_seconds = time.perf_counter() - t0

    @classmethod
    def from_history(
        cls,
        history: FrameHistory,
        *,
        where: HistoryFilter | None = None,
        kind: Kind = "flat",
        nlist: int = 0,
        nprobe: int = 16,
        gpu: bool = True,
        page_size: int = 10_000,
    ) -> FaissEngine:
        """Export the frames ``where`` allows (filtered by the store itself) and index them."""
        t0 = time.perf_counter()
        ids: list[str] = []
        vids: list[str] = []
        ts: list[np.ndarray] = []
        vecs: list[np.ndarray] = []
        for page in history.export_frames(where, page_size=page_size):
            ids += page.frame_ids
            vids += page.video_ids
            ts.append(page.ts)
            vecs.append(page.vectors)
        dim = history.dim or 0
        x = np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32)
        vecs.clear()
        engine = cls(x, ids, vids, np.concatenate(ts) if ts else np.zeros(0), kind=kind, nlist=nlist,
                     nprobe=nprobe, gpu=gpu, where=where)
        engine.export_seconds = time.perf_counter() - t0 - engine.build_seconds
        return engine

    export_seconds: float = 0.0

    @property
    def ntotal(self) -> int:
        return len(self.frame_ids)

    def describe(self) -> str:
        what = "exact (IndexFlatIP)" if self.kind == "flat" else f"IVF (nlist {self.nlist}, nprobe {self.nprobe})"
        return (f"faiss {what} over {self.ntotal} frames on {self.device}; "
                f"export {self.export_seconds:.2f} s, build {self.build_seconds:.2f} s")

    # -- search -------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Inner products and row positions (-1: none), best first, for each query; ``allowed``: positions."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.dim and self.ntotal:
            raise QueryError(f"query has {q.shape[1]} dimensions; the exported frames have {self.dim}")
        if not np.all(np.isfinite(q)):
            raise QueryError("the query vector holds NaN or infinite values")
        limit = self.ntotal if allowed is None else len(allowed)
        k = min(int(k), limit)
        if k <= 0 or self.cpu_index is None:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        if allowed is not None:  # GPU indexes take no selector: the CPU copy answers
            sel = faiss.IDSelectorBatch(np.asarray(allowed, np.int64))
            params = (faiss.SearchParametersIVF(sel=sel, nprobe=self.nprobe) if self.kind == "ivf"
                      else faiss.SearchParameters(sel=sel))
            return self.cpu_index.search(q, k, params=params)
        index = self.index if k <= GPU_MAX_K else self.cpu_index
        return index.search(q, k)

    def allowed_positions(
        self, where: HistoryFilter | None, since: float | None = None, until: float | None = None
    ) -> np.ndarray | None:
        """Row positions ``where`` allows (None: all).

        ``where`` must be the export filter, narrowed at most to some videos.
        """
        w = HistoryFilter.of(where, since=since, until=until)
        if replace(w, video_ids=None) != replace(self.where, video_ids=None):
            raise QueryError(
                f"this faiss index holds the frames of filter {self.where.to_dict()}; "
                f"it cannot answer filter {w.to_dict()} (export again with that filter)")
        if w.video_ids is None:
            return None
        return np.flatnonzero(np.isin(self.video_ids, np.asarray(list(w.video_ids), dtype=object)))

    def hits(self, scores: np.ndarray, positions: np.ndarray) -> list[FrameHit]:
        return [FrameHit(self.frame_ids[p], self.video_ids[p], float(self.ts[p]), from_inner_product(s))
                for s, p in zip(scores, positions) if p >= 0]

    def search_frames(
        self, vector: np.ndarray, k: int, *, since: float | None = None, until: float | None = None,
        where: HistoryFilter | None = None, num_candidates: int | None = None,
    ) -> list[FrameHit]:
        """:meth:`FrameHistory.search_frames` on the exported frames (``num_candidates`` is ignored).

        ``where`` must be the filter the frames were exported with, narrowed
        at most to some videos (what a hybrid transcript query does).
        """
        allowed = self.allowed_positions(where, since, until)
        if allowed is not None and len(allowed) == 0:
            return []
        scores, positions = self.search(np.asarray(vector, np.float32).reshape(1, -1), k, allowed)
        return self.hits(scores[0], positions[0]) if len(scores) else []

    def search_many(self, queries: np.ndarray, k: int) -> list[list[FrameHit]]:
        """The k best frames of each query, searched together (a batch sweep: one pass over the index)."""
        scores, positions = self.search(queries, k)
        return [self.hits(s, p) for s, p in zip(scores, positions)] if scores.size else [[] for _ in queries]
