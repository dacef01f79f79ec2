"""The embedded frame history: SQLite (metadata, FTS5 transcripts, embeddings) + exact faiss.

One video is one transaction: its row, all its frames and its transcript's
full-text entry are committed together, so after a crash a video is either
absent or complete. Per-video fields (transcript, layout, times) live once in
``videos``; frames hold only what differs per frame.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import QueryError
from indexer.records import FrameRecord, Transcript, VideoRecord
from search.errors import NotFoundError, StoreError
from search.history import (
    NO_DECISION,
    FrameHistory,
    FramePage,
    HistoryFilter,
    SweepCandidate,
    merge_candidate,
)
from search.local.db import (
    META_SCHEMA,
    GuardedStore,
    ModelGuard,
    connect,
    ensure_schema,
    transaction,
)
from search.local.vectors import VectorIndex
from search.scores import from_inner_product
from search.types import FrameHit, StoredVideo, TranscriptHit

SCHEMA = [
    META_SCHEMA,
    """CREATE TABLE IF NOT EXISTS videos (
        vid INTEGER PRIMARY KEY,
        video_id TEXT NOT NULL UNIQUE,
        path TEXT NOT NULL,
        size_bytes INTEGER, duration REAL, width INTEGER, height INTEGER, fps REAL,
        has_audio INTEGER, has_speech INTEGER, language TEXT,
        transcript TEXT NOT NULL DEFAULT '',
        transcript_json TEXT,
        sampler TEXT, model_id TEXT NOT NULL,
        frame_count INTEGER NOT NULL,
        layout TEXT, layout_json TEXT, source TEXT,
        uploaded_at REAL NOT NULL, indexed_at REAL NOT NULL,
        decision TEXT, warnings_json TEXT)""",
    "CREATE INDEX IF NOT EXISTS videos_uploaded ON videos(uploaded_at)",
    """CREATE TABLE IF NOT EXISTS frames (
        rowid INTEGER PRIMARY KEY,
        frame_id TEXT NOT NULL UNIQUE,
        vid INTEGER NOT NULL REFERENCES videos(vid) ON DELETE CASCADE,
        ts REAL NOT NULL,
        pdq TEXT, pdq_quality INTEGER,
        embedding BLOB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS frames_vid ON frames(vid)",
    """CREATE TABLE IF NOT EXISTS sweep_runs (run_id TEXT PRIMARY KEY, state_json TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS sweep_candidates (
        policy TEXT NOT NULL, video_id TEXT NOT NULL, score REAL NOT NULL, body_json TEXT NOT NULL,
        PRIMARY KEY (policy, video_id))""",
    """CREATE VIRTUAL TABLE IF NOT EXISTS transcripts USING fts5(
        transcript, content='videos', content_rowid='vid', tokenize='unicode61 remove_diacritics 2')""",
    """CREATE TRIGGER IF NOT EXISTS videos_ai AFTER INSERT ON videos BEGIN
        INSERT INTO transcripts(rowid, transcript) VALUES (new.vid, new.transcript); END""",
    """CREATE TRIGGER IF NOT EXISTS videos_ad AFTER DELETE ON videos BEGIN
        INSERT INTO transcripts(transcripts, rowid, transcript) VALUES ('delete', old.vid, old.transcript); END""",
    """CREATE TRIGGER IF NOT EXISTS videos_au AFTER UPDATE OF transcript ON videos BEGIN
        INSERT INTO transcripts(transcripts, rowid, transcript) VALUES ('delete', old.vid, old.transcript);
        INSERT INTO transcripts(rowid, transcript) VALUES (new.vid, new.transcript); END""",
]

_VIDEO_COLS = (
    "video_id, path, duration, width, height, frame_count, transcript, has_speech, language, "
    "model_id, sampler, indexed_at, uploaded_at, layout, source, decision, layout_json"
)


def _stored(row: sqlite3.Row) -> StoredVideo:
    return StoredVideo(
        video_id=row["video_id"], path=row["path"], duration=row["duration"], width=row["width"],
        height=row["height"], frame_count=row["frame_count"], transcript=row["transcript"],
        has_speech=bool(row["has_speech"]), language=row["language"], model_id=row["model_id"],
        sampler=row["sampler"], indexed_at=row["indexed_at"], uploaded_at=row["uploaded_at"],
        layout=row["layout"], source=row["source"], decision=row["decision"],
        layout_detail=json.loads(row["layout_json"]) if row["layout_json"] else None,
    )


def fts_query(text: str) -> str:
    """Plain words → an FTS5 query matching all of them, immune to FTS syntax in user input."""
    words = re.findall(r"\w+", text, flags=re.UNICODE)
    if not words:
        raise QueryError(f"transcript query {text!r} has no words to search for")
    return " AND ".join('"' + w.replace('"', "") + '"' for w in words[:64])


class LocalHistory(GuardedStore, FrameHistory):
    def __init__(self, directory: str | Path, *, model_id: str | None = None, dim: int | None = None) -> None:
        self.directory = Path(directory)
        self.conn = connect(self.directory / "history.sqlite3")
        ensure_schema(self.conn, SCHEMA)
        self._guard = ModelGuard(self.conn, "frame history", self.directory)
        self._guard.check(model_id, dim)
        self._want_model, self._want_dim = model_id, dim
        self._vectors = VectorIndex(self.conn, "frames", snapshot=self.directory / "frames.faiss")
        self._wrote = False

    def add_video(self, record: VideoRecord) -> bool:
        if not record.frames:
            raise StoreError(f"{record.path}: no frames to store")
        emb = record.embeddings
        now = time.time()
        t = record.transcript
        with transaction(self.conn):
            if self.has_video(record.video_id):
                return False
            self._guard.claim(record.model_id, int(emb.shape[1]))
            cur = self.conn.execute(
                """INSERT INTO videos(video_id, path, size_bytes, duration, width, height, fps,
                    has_audio, has_speech, language, transcript, transcript_json, sampler, model_id,
                    frame_count, layout, layout_json, source, uploaded_at, indexed_at, decision, warnings_json)
                   VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                (record.video_id, record.path, record.size_bytes, record.duration, record.width,
                 record.height, record.fps, int(record.has_audio), int(t.has_speech), t.language,
                 t.text, json.dumps(t.to_dict()), record.sampler, record.model_id, len(record.frames),
                 record.layout, json.dumps(record.layout_detail) if record.layout_detail else None,
                 record.source, record.uploaded_at or record.indexed_at or now,
                 record.indexed_at or now, None, json.dumps(getattr(record, "warnings", []) or [])),
            )
            vid = cur.lastrowid
            self.conn.executemany(
                "INSERT INTO frames(frame_id, vid, ts, pdq, pdq_quality, embedding) VALUES(?,?,?,?,?,?)",
                [
                    (f.frame_id, vid, f.ts, f.pdq, f.pdq_quality, emb[i].tobytes())
                    for i, f in enumerate(record.frames)
                ],
            )
        self._wrote = True
        return True

    def has_video(self, video_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM videos WHERE video_id = ?", (video_id,)).fetchone() is not None

    def get_videos(self, video_ids: list[str]) -> dict[str, StoredVideo]:
        if not video_ids:
            return {}
        marks = ",".join("?" * len(video_ids))
        rows = self.conn.execute(f"SELECT {_VIDEO_COLS} FROM videos WHERE video_id IN ({marks})", video_ids)
        return {r["video_id"]: _stored(r) for r in rows}

    def set_decision(self, video_id: str, decision: str | None) -> None:
        with transaction(self.conn):
            cur = self.conn.execute("UPDATE videos SET decision = ? WHERE video_id = ?", (decision, video_id))
        if cur.rowcount == 0:
            raise NotFoundError(f"video {video_id} is not in the frame history at {self.directory}")

    @staticmethod
    def _where(where: HistoryFilter) -> tuple[str, list]:
        clauses, args = [], []
        if where.since is not None:
            clauses.append("v.uploaded_at >= ?")
            args.append(where.since)
        if where.until is not None:
            clauses.append("v.uploaded_at < ?")
            args.append(where.until)
        for col, values in (("layout", where.layouts), ("source", where.sources)):
            if values:
                clauses.append(f"v.{col} IN (SELECT value FROM json_each(?))")
                args.append(json.dumps(list(values)))
        if where.decisions:
            named = [d for d in where.decisions if d != NO_DECISION]
            parts = ["v.decision IN (SELECT value FROM json_each(?))"]
            args.append(json.dumps(named))
            if NO_DECISION in where.decisions:
                parts.append("v.decision IS NULL")
            clauses.append("(" + " OR ".join(parts) + ")")
        if where.video_ids is not None:
            clauses.append("v.video_id IN (SELECT value FROM json_each(?))")
            args.append(json.dumps(list(where.video_ids)))
        return (" AND ".join(clauses) or "1"), args

    def _check_query(self, vector: np.ndarray) -> np.ndarray:
        q = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        if self.dim is not None and q.shape[1] != self.dim:
            raise QueryError(f"query has {q.shape[1]} dimensions; the history holds {self.dim}-d vectors")
        if not np.all(np.isfinite(q)):
            raise QueryError("the query vector holds NaN or infinite values")
        return q

    def _allowed(self, where: HistoryFilter) -> np.ndarray | None:
        if where.is_empty():
            return None
        sql, args = self._where(where)
        return np.array(
            [r[0] for r in self.conn.execute(
                f"SELECT f.rowid FROM frames f JOIN videos v ON v.vid = f.vid WHERE {sql}", args)],
            dtype=np.int64,
        )

    def _frame_hits(self, found: list[tuple[int, float]]) -> list[FrameHit]:
        if not found:
            return []
        meta = {
            r[0]: r
            for r in self.conn.execute(
                "SELECT f.rowid, f.frame_id, v.video_id, f.ts FROM frames f JOIN videos v ON v.vid = f.vid "
                "WHERE f.rowid IN (SELECT value FROM json_each(?))", (json.dumps([i for i, _ in found]),))
        }
        return [
            FrameHit(meta[i]["frame_id"], meta[i]["video_id"], meta[i]["ts"], from_inner_product(s))
            for i, s in found
            if i in meta
        ]

    def search_frames(
        self, vector: np.ndarray, k: int, *, since: float | None = None, until: float | None = None,
        where: HistoryFilter | None = None, num_candidates: int | None = None,
    ) -> list[FrameHit]:
        q = self._check_query(vector)
        allowed = self._allowed(HistoryFilter.of(where, since=since, until=until))
        scores, ids = self._vectors.search(q, k, allowed)
        return self._frame_hits([(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0])

    def scan_frames(
        self, vector: np.ndarray, *, min_score: float, where: HistoryFilter | None = None,
        cursor: Any = None, page_size: int = 500,
    ) -> Iterator[tuple[list[FrameHit], Any]]:
        q = self._check_query(vector)
        allowed = self._allowed(HistoryFilter.of(where))
        total = self.conn.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
        if total == 0:
            return
        scores, ids = self._vectors.search(q, total, allowed)  # exact: every allowed frame, scored
        hits = [h for h in self._frame_hits([(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0])
                if h.score >= min_score]
        hits.sort(key=lambda h: (-h.score, h.frame_id))
        if cursor is not None:
            c_score, c_id = float(cursor[0]), str(cursor[1])
            hits = [h for h in hits if h.score < c_score or (h.score == c_score and h.frame_id > c_id)]
        for i in range(0, len(hits), page_size):
            page = hits[i: i + page_size]
            yield page, [page[-1].score, page[-1].frame_id]

    def export_frames(self, where: HistoryFilter | None = None, *, page_size: int = 10_000) -> Iterator[FramePage]:
        sql, args = self._where(HistoryFilter.of(where))
        dim, last = self.dim, 0
        while True:
            rows = self.conn.execute(
                f"SELECT f.rowid, f.frame_id, v.video_id, f.ts, f.embedding FROM frames f "
                f"JOIN videos v ON v.vid = f.vid WHERE f.rowid > ? AND {sql} ORDER BY f.rowid LIMIT ?",
                [last, *args, page_size]).fetchall()
            if not rows:
                return
            last = int(rows[-1][0])
            vecs = np.frombuffer(b"".join(r[4] for r in rows), dtype=np.float32).reshape(len(rows), dim)
            yield FramePage([r[1] for r in rows], [r[2] for r in rows],
                            np.fromiter((r[3] for r in rows), np.float64, len(rows)), vecs.copy())

    def search_transcripts(
        self, query: str, limit: int, *, since: float | None = None, until: float | None = None,
        where: HistoryFilter | None = None,
    ) -> list[TranscriptHit]:
        sql, args = self._where(HistoryFilter.of(where, since=since, until=until))
        rows = self.conn.execute(
            f"""SELECT v.video_id, -bm25(transcripts) AS score,
                       snippet(transcripts, 0, '[', ']', '…', 16) AS snip
                FROM transcripts JOIN videos v ON v.vid = transcripts.rowid
                WHERE transcripts MATCH ? AND {sql}
                ORDER BY bm25(transcripts) LIMIT ?""",
            [fts_query(query), *args, limit],
        )
        return [TranscriptHit(r["video_id"], float(r["score"]), r["snip"]) for r in rows]

    # -- generations ---------------------------------------------------------------------
    def export_videos(self, after: str | None, limit: int, *,
                      with_embeddings: bool = True) -> list[tuple[VideoRecord, str | None]]:
        rows = self.conn.execute(
            "SELECT * FROM videos WHERE video_id > ? ORDER BY video_id LIMIT ?", (after or "", limit)).fetchall()
        if not rows:
            return []
        marks = ",".join("?" * len(rows))
        col = "f.embedding" if with_embeddings else "NULL"
        frames: dict[int, list] = {}
        for f in self.conn.execute(
                f"SELECT f.vid, f.frame_id, f.ts, f.pdq, f.pdq_quality, {col} FROM frames f "
                f"WHERE f.vid IN ({marks}) ORDER BY f.vid, f.ts", [r["vid"] for r in rows]):
            frames.setdefault(f[0], []).append(f)
        dim = self.dim or 0
        out = []
        for r in rows:
            fr = [FrameRecord(f[1], r["video_id"], f[2],
                              np.frombuffer(f[5], np.float32).copy() if f[5] is not None else np.zeros(dim, np.float32),
                              f[3], f[4]) for f in frames.get(r["vid"], [])]
            out.append((VideoRecord(
                video_id=r["video_id"], path=r["path"], size_bytes=r["size_bytes"] or 0, duration=r["duration"],
                width=r["width"], height=r["height"], fps=r["fps"], has_audio=bool(r["has_audio"]),
                transcript=Transcript.from_dict(json.loads(r["transcript_json"])) if r["transcript_json"]
                else Transcript(text=r["transcript"]),
                sampler=r["sampler"] or "", model_id=r["model_id"], frames=fr, source=r["source"],
                uploaded_at=r["uploaded_at"], indexed_at=r["indexed_at"], layout=r["layout"],
                layout_detail=json.loads(r["layout_json"]) if r["layout_json"] else None,
                warnings=json.loads(r["warnings_json"]) if r["warnings_json"] else []), r["decision"]))
        return out

    def sweep_records(self) -> tuple[dict[str, dict], list[SweepCandidate]]:
        runs = {r[0]: json.loads(r[1]) for r in self.conn.execute("SELECT run_id, state_json FROM sweep_runs")}
        cands = [SweepCandidate.from_dict(json.loads(r[0]))
                 for r in self.conn.execute("SELECT body_json FROM sweep_candidates ORDER BY policy, video_id")]
        return runs, cands

    def drop(self) -> None:
        self._wrote = False
        self.close()
        for p in self.directory.iterdir():  # only this generation's files: the original holds the others' folder
            if p.is_file() and (p.name.startswith(("history.sqlite3", "frames."))):
                p.unlink()
        if self.directory.parent.name == "generations":
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- sweep records ---------------------------------------------------------------
    def sweep_state(self, run_id: str) -> dict | None:
        row = self.conn.execute("SELECT state_json FROM sweep_runs WHERE run_id = ?", (run_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def save_sweep_state(self, run_id: str, state: dict) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "INSERT INTO sweep_runs(run_id, state_json) VALUES(?, ?) "
                "ON CONFLICT(run_id) DO UPDATE SET state_json = excluded.state_json", (run_id, json.dumps(state)))

    def upsert_candidates(self, candidates: list[SweepCandidate]) -> int:
        new = 0
        with transaction(self.conn):
            for c in candidates:
                row = self.conn.execute("SELECT body_json FROM sweep_candidates WHERE policy = ? AND video_id = ?",
                                        (c.policy, c.video_id)).fetchone()
                old = SweepCandidate.from_dict(json.loads(row[0])) if row else None
                merged = merge_candidate(old, c)
                new += old is None
                self.conn.execute(
                    "INSERT INTO sweep_candidates(policy, video_id, score, body_json) VALUES(?,?,?,?) "
                    "ON CONFLICT(policy, video_id) DO UPDATE SET score = excluded.score, body_json = excluded.body_json",
                    (c.policy, c.video_id, merged.score, json.dumps(merged.to_dict())))
        return new

    def sweep_candidates(self, policy: str, *, limit: int | None = None) -> list[SweepCandidate]:
        rows = self.conn.execute(
            "SELECT body_json FROM sweep_candidates WHERE policy = ? ORDER BY score DESC, video_id LIMIT ?",
            (policy, -1 if limit is None else limit))
        return [SweepCandidate.from_dict(json.loads(r[0])) for r in rows]

    def check_consistency(self) -> list[str]:
        """Videos whose stored frame count disagrees with their frames (should never happen)."""
        rows = self.conn.execute(
            "SELECT v.video_id FROM videos v LEFT JOIN frames f ON f.vid = v.vid "
            "GROUP BY v.vid HAVING COUNT(f.rowid) != v.frame_count"
        )
        return [r[0] for r in rows]

    def stats(self) -> dict:
        videos, frames = self.conn.execute(
            "SELECT (SELECT COUNT(*) FROM videos), (SELECT COUNT(*) FROM frames)").fetchone()
        size = sum(p.stat().st_size for p in self.directory.glob("*") if p.is_file())
        return {
            "backend": "local",
            "location": str(self.directory),
            "videos": videos,
            "frames": frames,
            "documents": videos + frames,  # rows: one per video, one per frame
            "segments": None,  # SQLite + one flat faiss index: no segments
            "model_ids": [r[0] for r in self.conn.execute("SELECT DISTINCT model_id FROM videos")],
            "bytes_on_disk": size,
            "sweep_candidates": self.conn.execute("SELECT COUNT(*) FROM sweep_candidates").fetchone()[0],
        }

    def close(self) -> None:
        if getattr(self, "_closed", False):
            return
        self._closed = True
        try:
            if self._wrote:  # catch the snapshot up with this session's rows: the next reader starts warm
                self._vectors.sync()
            self._vectors.save()
        finally:
            self.conn.close()
