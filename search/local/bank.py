"""The embedded exemplar bank: SQLite rows, exact faiss search over enabled exemplars."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from indexer.errors import NotFoundError, StoreError
from search.bank import ExemplarBank, exemplar_id
from search.local.db import META_SCHEMA, ModelGuard, bump_epoch, connect, transaction
from search.local.vectors import VectorIndex
from search.scores import from_inner_product
from search.types import AddResult, Exemplar, Match, Policy, Rule

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
]

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


class LocalBank(ExemplarBank):
    def __init__(self, directory: str | Path, *, model_id: str | None = None, dim: int | None = None) -> None:
        self.directory = Path(directory)
        self.conn = connect(self.directory / "bank.sqlite3")
        with transaction(self.conn):
            for stmt in SCHEMA:
                self.conn.execute(stmt)
        self._guard = ModelGuard(self.conn, "exemplar bank", self.directory)
        self._guard.check(model_id, dim)
        self._want_model, self._want_dim = model_id, dim
        self._vectors = VectorIndex(self.conn, "exemplars", where="enabled = 1")

    @property
    def model_id(self) -> str | None:  # type: ignore[override]
        return self._guard.model_id or self._want_model

    @property
    def dim(self) -> int | None:  # type: ignore[override]
        return self._guard.dim or self._want_dim

    # -- policies ---------------------------------------------------------------

    def put_policy(self, policy: Policy) -> Policy:
        now = time.time()
        with transaction(self.conn):
            self.conn.execute(
                "INSERT INTO policies(name, threshold, rule, description, created_at, updated_at) "
                "VALUES(?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET threshold = excluded.threshold, "
                "rule = excluded.rule, description = excluded.description, updated_at = excluded.updated_at",
                (policy.name, policy.threshold, str(policy.rule), policy.description,
                 policy.created_at or now, now),
            )
        got = self.get_policy(policy.name)
        assert got is not None
        return got

    def get_policy(self, name: str) -> Policy | None:
        row = self.conn.execute("SELECT * FROM policies WHERE name = ?", (name,)).fetchone()
        return _policy(row) if row else None

    def list_policies(self) -> list[Policy]:
        return [_policy(r) for r in self.conn.execute("SELECT * FROM policies ORDER BY name")]

    # -- exemplars ----------------------------------------------------------------

    def add(self, exemplar: Exemplar, vector: np.ndarray) -> AddResult:
        v = self._check_vector(exemplar, vector)
        exemplar.exemplar_id = exemplar_id(exemplar.policy, exemplar.kind, exemplar.content_hash)
        exemplar.added_at = exemplar.added_at or time.time()
        with transaction(self.conn):
            if self.get_policy(exemplar.policy) is None:
                raise NotFoundError(
                    f"unknown policy {exemplar.policy!r}; create it first (policies: "
                    f"{', '.join(p.name for p in self.list_policies()) or 'none'})"
                )
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
        return AddResult(exemplar, created=True)

    def get(self, exemplar_id: str) -> Exemplar | None:
        row = self.conn.execute(f"SELECT {_COLS} FROM exemplars WHERE exemplar_id = ?", (exemplar_id,)).fetchone()
        return _exemplar(row) if row else None

    def _resolve(self, ident: str) -> Exemplar:
        """Exact id, or a unique prefix of one (ids are long; people type the first few)."""
        found = self.get(ident)
        if found:
            return found
        rows = self.conn.execute(
            f"SELECT {_COLS} FROM exemplars WHERE exemplar_id LIKE ? LIMIT 2", (ident + "%",)
        ).fetchall() if len(ident) >= 4 else []
        if len(rows) == 1:
            return _exemplar(rows[0])
        if len(rows) > 1:
            raise StoreError(f"exemplar id prefix {ident!r} is ambiguous; give more characters")
        raise NotFoundError(f"no exemplar with id {ident!r}")

    def list(self, policy: str | None = None, enabled: bool | None = None) -> list[Exemplar]:
        sql, args = f"SELECT {_COLS} FROM exemplars WHERE 1", []
        if policy is not None:
            sql += " AND policy = ?"
            args.append(policy)
        if enabled is not None:
            sql += " AND enabled = ?"
            args.append(int(enabled))
        return [_exemplar(r) for r in self.conn.execute(sql + " ORDER BY policy, added_at", args)]

    def remove(self, exemplar_id: str) -> Exemplar:
        ex = self._resolve(exemplar_id)
        with transaction(self.conn):
            self.conn.execute("DELETE FROM exemplars WHERE exemplar_id = ?", (ex.exemplar_id,))
            bump_epoch(self.conn)
        return ex

    def set_enabled(self, exemplar_id: str, enabled: bool) -> Exemplar:
        ex = self._resolve(exemplar_id)
        with transaction(self.conn):
            self.conn.execute("UPDATE exemplars SET enabled = ? WHERE exemplar_id = ?", (int(enabled), ex.exemplar_id))
            bump_epoch(self.conn)
        ex.enabled = enabled
        return ex

    def knn(self, vectors: np.ndarray, k: int, policies: list[str] | None = None) -> list[list[Match]]:
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
