"""The embedded exemplar bank: SQLite rows, exact faiss search over enabled exemplars.

Same operations as the Redis bank (the conformance suite runs on both): the
audit log is an append-only SQLite table written in the same transaction as
the change; PDQ near-duplicates are an exact Hamming scan in NumPy; a rebuild
for a new encoder rewrites every vector in one transaction, so a reader sees
the old bank or the new one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from indexer.pdq import MATCH_DISTANCE, MIN_QUALITY
from search.bank import (
    ExemplarBank,
    Reembed,
    default_actor,
    exemplar_id,
    exemplar_public,
    pdq_bits,
    pdq_score,
)
from search.errors import NotFoundError, StoreError
from search.local.db import (
    META_SCHEMA,
    GuardedStore,
    ModelGuard,
    bump_epoch,
    get_meta,
    connect,
    ensure_schema,
    set_meta,
    transaction,
)
from search.local.vectors import VectorIndex
from search.scores import from_inner_product
from search.types import (
    AddResult,
    AuditEntry,
    Exemplar,
    Label,
    Match,
    Policy,
    RebuildReport,
    Rule,
)

SCHEMA = [
    META_SCHEMA,
    """CREATE TABLE IF NOT EXISTS policies (
        name TEXT PRIMARY KEY,
        threshold REAL NOT NULL,
        rule TEXT NOT NULL DEFAULT 'best',
        description TEXT NOT NULL DEFAULT '',
        created_at REAL, updated_at REAL)""",
    """CREATE TABLE IF NOT EXISTS exemplars (
        rowid INTEGER PRIMARY KEY,
        exemplar_id TEXT NOT NULL UNIQUE,
        policy TEXT NOT NULL REFERENCES policies(name),
        kind TEXT NOT NULL CHECK (kind IN ('text', 'image', 'frame')),
        source TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        added_by TEXT NOT NULL DEFAULT '',
        added_at REAL NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        model_id TEXT NOT NULL,
        pdq TEXT, pdq_quality INTEGER,
        embedding BLOB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS exemplars_policy ON exemplars(policy)",
    # the vectors of the model before the last rebuild, kept for `sludge migrate --rollback` until --finish
    """CREATE TABLE IF NOT EXISTS kept_vectors (
        exemplar_id TEXT PRIMARY KEY,
        embedding BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        before TEXT, after TEXT)""",
    "CREATE INDEX IF NOT EXISTS audit_target ON audit(target)",
    """CREATE TABLE IF NOT EXISTS labels (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        label_id TEXT NOT NULL UNIQUE,
        policy TEXT NOT NULL REFERENCES policies(name),
        video_id TEXT NOT NULL,
        verdict TEXT NOT NULL CHECK (verdict IN ('confirm', 'dismiss', 'retract')),
        reviewer TEXT NOT NULL,
        subject TEXT NOT NULL,
        score REAL, path TEXT, note TEXT NOT NULL DEFAULT '',
        at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS labels_video ON labels(video_id)",
    """CREATE TRIGGER IF NOT EXISTS labels_no_update BEFORE UPDATE ON labels
        BEGIN SELECT RAISE(ABORT, 'labels are append-only'); END""",
    # append-only: the log of changes cannot itself be changed
    """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
]

def _allow_retract(conn) -> None:
    """Banks made before labels could be retracted: the labels table's CHECK admits 'retract' after this.

    SQLite cannot change a CHECK constraint in place, so the table is rebuilt under the current schema in
    one transaction (the rows, their order and the append-only trigger kept)."""
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'labels'").fetchone()
    if row is None or "'retract'" in row[0]:
        return
    create = next(s for s in SCHEMA if "CREATE TABLE IF NOT EXISTS labels" in s)
    after = [s for s in SCHEMA if "ON labels" in s]  # its index and trigger
    with transaction(conn):
        conn.execute("DROP TRIGGER IF EXISTS labels_no_update")
        conn.execute("DROP INDEX IF EXISTS labels_video")
        conn.execute("ALTER TABLE labels RENAME TO labels_before_retract")
        conn.execute(create)
        conn.execute("INSERT INTO labels SELECT * FROM labels_before_retract")
        conn.execute("DROP TABLE labels_before_retract")
        for stmt in after:
            conn.execute(stmt)


_COLS = (
    "exemplar_id, policy, kind, source, content_hash, note, added_by, added_at, enabled, "
    "model_id, pdq, pdq_quality"
)


def _exemplar(row) -> Exemplar:
    return Exemplar(
        exemplar_id=row["exemplar_id"],
        policy=row["policy"],
        kind=row["kind"],
        source=row["source"],
        content_hash=row["content_hash"],
        note=row["note"],
        added_by=row["added_by"],
        added_at=row["added_at"],
        enabled=bool(row["enabled"]),
        model_id=row["model_id"],
        pdq=row["pdq"],
        pdq_quality=row["pdq_quality"],
    )


def _policy(row) -> Policy:
    return Policy(
        name=row["name"],
        threshold=row["threshold"],
        rule=Rule.parse(row["rule"]),
        description=row["description"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class LocalBank(GuardedStore, ExemplarBank):
    backend = "local"

    def __init__(self, directory: str | Path, *, model_id: str | None = None, dim: int | None = None) -> None:
        self.directory = Path(directory)
        self.conn = connect(self.directory / "bank.sqlite3")
        ensure_schema(self.conn, SCHEMA)
        _allow_retract(self.conn)
        self._guard = ModelGuard(self.conn, "exemplar bank", self.directory)
        self._guard.check(model_id, dim)
        self._want_model, self._want_dim = model_id, dim
        self._vectors = VectorIndex(self.conn, "exemplars", where="enabled = 1")

    # -- policies ---------------------------------------------------------------

    def _audit(self, actor: str | None, action: str, target: str, before: dict | None,
               after: dict | None) -> None:
        """Inside the caller's transaction: the change and its log entry commit together."""
        self.conn.execute(
            "INSERT INTO audit(ts, actor, action, target, before, after) VALUES(?, ?, ?, ?, ?, ?)",
            (time.time(), actor or default_actor(), action, target,
             json.dumps(before) if before is not None else None,
             json.dumps(after) if after is not None else None),
        )

    def put_policy(self, policy: Policy, *, actor: str | None = None) -> Policy:
        policy.check()
        now = time.time()
        with transaction(self.conn):
            before = self.get_policy(policy.name)
            self.conn.execute(
                "INSERT INTO policies(name, threshold, rule, description, created_at, updated_at) "
                "VALUES(?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET threshold = excluded.threshold, "
                "rule = excluded.rule, description = excluded.description, updated_at = excluded.updated_at",
                (policy.name, policy.threshold, str(policy.rule), policy.description,
                 policy.created_at or now, now),
            )
            got = self.get_policy(policy.name)
            assert got is not None
            self._audit(actor, "policy.update" if before else "policy.create", policy.name,
                        before.to_dict() if before else None, got.to_dict())
        return got

    def get_policy(self, name: str) -> Policy | None:
        row = self.conn.execute("SELECT * FROM policies WHERE name = ?", (name,)).fetchone()
        return _policy(row) if row else None

    def list_policies(self) -> list[Policy]:
        return [_policy(r) for r in self.conn.execute("SELECT * FROM policies ORDER BY name")]

    # -- exemplars ----------------------------------------------------------------

    def add(self, exemplar: Exemplar, vector: np.ndarray, *, actor: str | None = None) -> AddResult:
        v = self._check_vector(exemplar, vector)
        exemplar.exemplar_id = exemplar_id(exemplar.policy, exemplar.kind, exemplar.content_hash)
        exemplar.added_at = exemplar.added_at or time.time()
        exemplar.added_by = exemplar.added_by or actor or default_actor()
        with transaction(self.conn):
            self.require_policy(exemplar.policy)
            self._guard.claim(exemplar.model_id, int(v.shape[0]))
            existing = self.get(exemplar.exemplar_id)
            if existing is not None:
                return AddResult(existing, created=False)
            self.conn.execute(
                f"INSERT INTO exemplars({_COLS}, embedding) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (exemplar.exemplar_id, exemplar.policy, exemplar.kind, exemplar.source,
                 exemplar.content_hash, exemplar.note, exemplar.added_by, exemplar.added_at,
                 int(exemplar.enabled), exemplar.model_id, exemplar.pdq, exemplar.pdq_quality,
                 v.astype(np.float32).tobytes()),
            )
            self._audit(actor or exemplar.added_by, "exemplar.add", exemplar.exemplar_id, None,
                        exemplar_public(exemplar))
        return AddResult(exemplar, created=True)

    def get(self, exemplar_id: str) -> Exemplar | None:
        row = self.conn.execute(f"SELECT {_COLS} FROM exemplars WHERE exemplar_id = ?", (exemplar_id,)).fetchone()
        return _exemplar(row) if row else None

    def resolve(self, ident: str) -> Exemplar:
        """Exact id, or a unique prefix of one (ids are long; people type the first few)."""
        found = self.get(ident)
        if found:
            return found
        rows = self.conn.execute(
            f"SELECT {_COLS} FROM exemplars WHERE exemplar_id LIKE ? LIMIT 2",
            (ident.replace("%", "").replace("_", "") + "%",),
        ).fetchall() if len(ident) >= 4 else []
        if len(rows) == 1:
            return _exemplar(rows[0])
        if len(rows) > 1:
            raise StoreError(f"exemplar id prefix {ident!r} is ambiguous; give more characters")
        raise NotFoundError(f"no exemplar with id {ident!r}")

    def list(self, policy: str | None = None, enabled: bool | None = None,
             kind: str | None = None) -> list[Exemplar]:
        sql, args = f"SELECT {_COLS} FROM exemplars WHERE 1", []
        if policy is not None:
            sql += " AND policy = ?"
            args.append(policy)
        if enabled is not None:
            sql += " AND enabled = ?"
            args.append(int(enabled))
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        return [_exemplar(r) for r in self.conn.execute(sql + " ORDER BY policy, added_at", args)]

    def remove(self, exemplar_id: str, *, actor: str | None = None) -> Exemplar:
        ex = self.resolve(exemplar_id)
        with transaction(self.conn):
            self.conn.execute("DELETE FROM exemplars WHERE exemplar_id = ?", (ex.exemplar_id,))
            bump_epoch(self.conn)
            self._audit(actor, "exemplar.remove", ex.exemplar_id, exemplar_public(ex), None)
        return ex

    def set_enabled(self, exemplar_id: str, enabled: bool, *, actor: str | None = None) -> Exemplar:
        ex = self.resolve(exemplar_id)
        if ex.enabled == enabled:
            return ex  # nothing changes, nothing to log
        with transaction(self.conn):
            self.conn.execute("UPDATE exemplars SET enabled = ? WHERE exemplar_id = ?", (int(enabled), ex.exemplar_id))
            bump_epoch(self.conn)
            before = exemplar_public(ex)
            ex.enabled = enabled
            self._audit(actor, "exemplar.enable" if enabled else "exemplar.disable", ex.exemplar_id, before,
                        exemplar_public(ex))
        return ex

    def vectors(self, exemplar_ids: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i in range(0, len(exemplar_ids), 500):
            chunk = exemplar_ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for r in self.conn.execute(
                    f"SELECT exemplar_id, embedding FROM exemplars WHERE exemplar_id IN ({marks})", chunk):
                out[r[0]] = np.frombuffer(r[1], dtype=np.float32).copy()
        return out

    def pdq_match(self, hashes: list[tuple[str, int] | None], policies: list[str] | None = None, *,
                  max_distance: int = MATCH_DISTANCE, min_quality: int = MIN_QUALITY) -> list[list[Match]]:
        sql = ("SELECT exemplar_id, policy, kind, source, pdq FROM exemplars "
               "WHERE enabled = 1 AND pdq IS NOT NULL AND pdq_quality >= ?")
        args: list = [min_quality]
        if policies is not None:
            sql += f" AND policy IN ({','.join('?' * len(policies))})"
            args.extend(policies)
        rows = self.conn.execute(sql, args).fetchall()
        bank_bits = pdq_bits([r["pdq"] for r in rows])
        out: list[list[Match]] = []
        for item in hashes:
            if item is None or item[1] < min_quality or not rows:
                out.append([])
                continue
            q = pdq_bits([item[0]])[0]
            dist = np.count_nonzero(bank_bits != q, axis=1)
            hits = np.flatnonzero(dist <= max_distance)
            matches = [Match(rows[i]["exemplar_id"], rows[i]["policy"], rows[i]["kind"], rows[i]["source"],
                             pdq_score(int(dist[i])), "pdq", int(dist[i])) for i in hits]
            matches.sort(key=lambda m: (m.distance, m.exemplar_id))
            out.append(matches)
        return out

    def _store_label(self, label: Label) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "INSERT INTO labels(label_id, policy, video_id, verdict, reviewer, subject, score, path, note, at) "
                "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (label.label_id, label.policy, label.video_id, label.verdict, label.reviewer, label.subject,
                 label.score, label.path, label.note, label.at))
            self._audit(label.reviewer, f"label.{label.verdict}", label.policy, None, label.to_dict())

    def labels(self, policy: str | None = None, video_id: str | None = None) -> list[Label]:
        sql, args = "SELECT * FROM labels WHERE 1=1", []
        if policy is not None:
            sql += " AND policy = ?"
            args.append(policy)
        if video_id is not None:
            sql += " AND video_id = ?"
            args.append(video_id)
        return [Label(r["policy"], r["video_id"], r["verdict"], r["reviewer"], r["subject"], r["score"], r["path"],
                      r["note"], r["label_id"], r["at"])
                for r in self.conn.execute(sql + " ORDER BY seq", args)]

    def audit(self, limit: int = 100, target: str | None = None) -> list[AuditEntry]:
        sql, args = "SELECT * FROM audit", []
        if target is not None:
            sql += " WHERE target = ?"
            args.append(target)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(int(limit))
        return [
            AuditEntry(str(r["seq"]), r["ts"], r["actor"], r["action"], r["target"],
                       json.loads(r["before"]) if r["before"] else None,
                       json.loads(r["after"]) if r["after"] else None)
            for r in self.conn.execute(sql, args)
        ]

    def rebuild(self, model_id: str, dim: int, reembed: Reembed, *,
                actor: str | None = None, keep_previous: bool = False, owner: str | None = None) -> RebuildReport:
        t0 = time.perf_counter()
        old_model = self.model_id
        same = old_model == model_id and self.dim == dim
        exemplars = self.list()
        old = self.vectors([e.exemplar_id for e in exemplars]) if same else {}
        new: dict[str, np.ndarray] = {}
        for ex in exemplars:  # everything is computed before anything is written
            v = np.asarray(reembed(ex, old.get(ex.exemplar_id)), dtype=np.float32).reshape(-1)
            if v.shape[0] != dim or not np.all(np.isfinite(v)) or np.linalg.norm(v) == 0:
                raise StoreError(f"re-embedding {ex.kind} exemplar {ex.exemplar_id} gave an unusable vector "
                                 f"({v.shape[0]}-d, expected {dim}-d); nothing was changed")
            new[ex.exemplar_id] = v / np.linalg.norm(v)
        with transaction(self.conn):
            self.conn.execute("DELETE FROM kept_vectors")
            for key in ("kept_model_id", "kept_dim"):
                self.conn.execute("DELETE FROM meta WHERE key = ?", (key,))
            if keep_previous and old_model is not None and not same:
                self.conn.execute("INSERT INTO kept_vectors(exemplar_id, embedding) "
                                  "SELECT exemplar_id, embedding FROM exemplars")
                set_meta(self.conn, "kept_model_id", old_model)
                set_meta(self.conn, "kept_dim", str(self.dim))
            for eid, v in new.items():
                self.conn.execute("UPDATE exemplars SET embedding = ?, model_id = ? WHERE exemplar_id = ?",
                                  (v.astype(np.float32).tobytes(), model_id, eid))
            set_meta(self.conn, "model_id", model_id)
            set_meta(self.conn, "dim", str(dim))
            bump_epoch(self.conn)
            report = RebuildReport(len(exemplars), 0 if same else len(exemplars), len(exemplars) if same else 0,
                                   old_model, model_id, None, round(time.perf_counter() - t0, 3))
            self._audit(actor, "bank.rebuild", "bank", {"model_id": old_model},
                        {"model_id": model_id, "dim": dim, "exemplars": len(exemplars)})
        self._want_model, self._want_dim = model_id, dim
        self._vectors = VectorIndex(self.conn, "exemplars", where="enabled = 1")
        return report

    def kept(self) -> tuple[str, int, dict[str, np.ndarray]] | None:
        model = get_meta(self.conn, "kept_model_id")
        if model is None:
            return None
        vecs = {r[0]: np.frombuffer(r[1], np.float32).copy()
                for r in self.conn.execute("SELECT exemplar_id, embedding FROM kept_vectors")}
        return model, int(get_meta(self.conn, "kept_dim") or 0), vecs

    def drop_kept(self, *, actor: str | None = None) -> None:
        with transaction(self.conn):
            model = get_meta(self.conn, "kept_model_id")
            self.conn.execute("DELETE FROM kept_vectors")
            for key in ("kept_model_id", "kept_dim"):
                self.conn.execute("DELETE FROM meta WHERE key = ?", (key,))
            if model is not None:
                self._audit(actor, "bank.drop_kept", "bank", {"kept_model_id": model}, None)

    def info(self) -> dict:
        return {
            "backend": self.backend,
            "location": str(self.directory),
            "model_id": self.model_id,
            "dim": self.dim,
            "index": "faiss IndexFlatIP (exact)",
            "exemplars": sum(c["total"] for c in self.counts().values()),
            "policies": len(self.list_policies()),
        }

    def knn(self, vectors: np.ndarray, k: int, policies: list[str] | None = None) -> list[list[Match]]:
        self._check_k(k)
        q = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if self.dim is not None and q.shape[1] != self.dim:
            raise StoreError(f"query vectors have {q.shape[1]} dimensions; the bank holds {self.dim}-d vectors")
        allowed = None
        if policies is not None:
            marks = ",".join("?" * len(policies))
            allowed = np.array(
                [r[0] for r in self.conn.execute(
                    f"SELECT rowid FROM exemplars WHERE enabled = 1 AND policy IN ({marks})", policies)],
                dtype=np.int64,
            )
        scores, ids = self._vectors.search(q, k, allowed)
        wanted = {int(i) for i in ids.ravel() if i >= 0}
        rows = {}
        if wanted:
            marks = ",".join("?" * len(wanted))
            for r in self.conn.execute(
                f"SELECT rowid, exemplar_id, policy, kind, source FROM exemplars WHERE rowid IN ({marks})",
                list(wanted),
            ):
                rows[r[0]] = r
        out: list[list[Match]] = []
        for srow, irow in zip(scores, ids):
            matches = []
            for s, i in zip(srow, irow):
                r = rows.get(int(i))
                if r is None:
                    continue
                matches.append(Match(r["exemplar_id"], r["policy"], r["kind"], r["source"], from_inner_product(s)))
            out.append(matches)
        return out

    def counts(self) -> dict[str, dict[str, int]]:
        """Exemplars per policy: total and enabled."""
        return {
            r[0]: {"total": r[1], "enabled": r[2]}
            for r in self.conn.execute(
                "SELECT policy, COUNT(*), SUM(enabled) FROM exemplars GROUP BY policy ORDER BY policy")
        }

    def close(self) -> None:
        self.conn.close()
