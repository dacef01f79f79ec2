"""An exact faiss index kept in step with the embeddings stored in SQLite.

faiss holds no truth of its own: ids are SQLite rowids and the index is
rebuilt or caught up from the table whenever it is behind. Appends are caught
up incrementally (rows above the last rowid seen); removals bump an epoch in
the store's meta table and trigger a rebuild. A snapshot file (written
atomically on close) saves re-reading every vector on the next start; it is
trusted only when its rowid and epoch still agree with the database.

Exact inner-product search (IndexFlatIP) on unit vectors is cosine similarity,
with recall 1.0 by construction; the embedded default serves one machine's
history, where exact search is fast enough and needs no tuning.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

import faiss
import numpy as np

from search.local.db import get_meta

_BATCH = 50_000


class VectorIndex:
    def __init__(
        self,
        conn: sqlite3.Connection,
        table: str,
        *,
        where: str = "1",
        snapshot: Path | None = None,
    ) -> None:
        self.conn, self.table, self.where, self.snapshot = conn, table, where, snapshot
        self._index: faiss.IndexIDMap2 | None = None
        self._max_rowid = 0
        self._epoch = -1
        self._dirty = False
        self._lock = threading.RLock()
        if snapshot is not None:
            self._load_snapshot()

    # -- state ----------------------------------------------------------------

    def _db_state(self) -> tuple[int, int]:
        row = self.conn.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {self.table}").fetchone()
        return int(row[0]), int(get_meta(self.conn, "epoch") or 0)

    def _dim(self) -> int | None:
        v = get_meta(self.conn, "dim")
        return int(v) if v else None

    def _load_snapshot(self) -> None:
        assert self.snapshot is not None
        side = self.snapshot.with_suffix(".json")
        if not (self.snapshot.exists() and side.exists()):
            return
        try:
            meta = json.loads(side.read_text())
            index = faiss.read_index(str(self.snapshot))
        except (OSError, ValueError, RuntimeError):
            return  # a damaged snapshot only costs a rebuild
        self._index = faiss.downcast_index(index) if not isinstance(index, faiss.IndexIDMap2) else index
        self._max_rowid, self._epoch = int(meta["max_rowid"]), int(meta["epoch"])

    def save(self) -> None:
        """Write the snapshot atomically (tmp + rename), only when it changed."""
        with self._lock:
            if self.snapshot is None or self._index is None or not self._dirty:
                return
            self.snapshot.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.snapshot.with_name(self.snapshot.name + ".tmp")
            faiss.write_index(self._index, str(tmp))
            os.replace(tmp, self.snapshot)
            side_tmp = self.snapshot.with_suffix(".json.tmp")
            side_tmp.write_text(json.dumps({"max_rowid": self._max_rowid, "epoch": self._epoch}))
            os.replace(side_tmp, self.snapshot.with_suffix(".json"))
            self._dirty = False

    # -- sync -------------------------------------------------------------------

    def sync(self) -> None:
        """Bring the index up to the database: catch up appends, rebuild after removals."""
        with self._lock:
            max_rowid, epoch = self._db_state()
            if epoch != self._epoch or max_rowid < self._max_rowid:
                self._rebuild(epoch)
            elif max_rowid > self._max_rowid:
                self._append_from(self._max_rowid)
            self._max_rowid = max(self._max_rowid, max_rowid)

    def _new_index(self) -> faiss.IndexIDMap2 | None:
        dim = self._dim()
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim)) if dim else None

    def _rebuild(self, epoch: int) -> None:
        self._index = self._new_index()
        self._max_rowid = 0
        self._epoch = epoch
        self._append_from(0)
        self._dirty = True

    def _append_from(self, after: int) -> None:
        if self._index is None:
            self._index = self._new_index()
            if self._index is None:
                return
        dim = self._index.d
        last = after
        while True:
            rows = self.conn.execute(
                f"SELECT rowid, embedding FROM {self.table} WHERE rowid > ? AND ({self.where}) "
                f"ORDER BY rowid LIMIT ?",
                (last, _BATCH),
            ).fetchall()
            if not rows:
                break
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
            self._index.add_with_ids(np.ascontiguousarray(vecs), ids)
            last = int(ids[-1])
            self._dirty = True
        self._max_rowid = max(self._max_rowid, last)

    # -- search -------------------------------------------------------------------

    @property
    def ntotal(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores (inner products) and rowids, best first; -1 ids pad missing results."""
        self.sync()
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if self._index is None or self._index.ntotal == 0 or k <= 0:
            return np.zeros((q.shape[0], 0), np.float32), np.zeros((q.shape[0], 0), np.int64)
        k = min(k, self._index.ntotal)
        params = None
        if allowed is not None:
            if len(allowed) == 0:
                return np.zeros((q.shape[0], 0), np.float32), np.zeros((q.shape[0], 0), np.int64)
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.asarray(allowed, np.int64)))
            k = min(k, len(allowed))
        with self._lock:
            scores, ids = self._index.search(q, k, params=params)
        return scores, ids
