"""SQLite plumbing shared by the embedded stores.

SQLite is the source of truth: every write is one transaction (WAL mode), so
a process killed mid-write leaves the store as it was before that write or
after it, never between. The faiss index is derived from it
(:mod:`search.local.vectors`).
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from search.errors import ModelMismatchError, StoreError

#: How long a write waits for another process's write to finish.
BUSY_TIMEOUT_S = 30.0


def _db_path(conn: sqlite3.Connection) -> str:
    row = conn.execute("PRAGMA database_list").fetchone()
    return row[2] if row else "?"


def ensure_schema(conn: sqlite3.Connection, statements: list[str]) -> None:
    """Create the tables once; a store whose schema is current is opened without taking the write lock.

    Readers (``recall``, ``history stats``) must not queue behind a long write of
    another process (WAL lets them read meanwhile), so the schema's fingerprint
    is kept in ``user_version`` and the DDL runs only when it differs.
    """
    version = zlib.crc32("\n".join(statements).encode()) & 0x7FFFFFFF
    if conn.execute("PRAGMA user_version").fetchone()[0] == version:
        return
    with transaction(conn):
        for stmt in statements:
            conn.execute(stmt)
        conn.execute(f"PRAGMA user_version = {version}")


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.DatabaseError as e:
        raise StoreError(f"cannot open store {path}: {e}") from None
    conn.row_factory = sqlite3.Row
    return conn


def _busy(e: sqlite3.OperationalError) -> bool:
    return "locked" in str(e) or "busy" in str(e)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any exception."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as e:
        if _busy(e):
            raise StoreError(f"the embedded store {_db_path(conn)} is busy: another sludge process has been "
                             f"writing to it for over {BUSY_TIMEOUT_S:.0f} s; try again when it is done") from None
        raise StoreError(f"cannot write to the embedded store {_db_path(conn)}: {e}") from None
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


META_SCHEMA = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def bump_epoch(conn: sqlite3.Connection) -> None:
    """Mark that rows were removed or hidden: derived vector indices must rebuild."""
    conn.execute(
        "INSERT INTO meta(key, value) VALUES('epoch', '1') "
        "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )


class ModelGuard:
    """Records the first model written to a store and refuses any other.

    Mixing two encoders' vectors in one index gives meaningless neighbours
    without any error, so the store itself must refuse.
    """

    def __init__(self, conn: sqlite3.Connection, what: str, location: Path) -> None:
        self.conn, self.what, self.location = conn, what, location

    @property
    def model_id(self) -> str | None:
        return get_meta(self.conn, "model_id")

    @property
    def dim(self) -> int | None:
        v = get_meta(self.conn, "dim")
        return int(v) if v is not None else None

    def check(self, model_id: str | None, dim: int | None) -> None:
        have = self.model_id
        if model_id is None or have is None:
            return
        if have != model_id or (dim is not None and self.dim != dim):
            raise ModelMismatchError(
                f"the {self.what} at {self.location} holds embeddings of {have} ({self.dim}-d); "
                f"this run uses {model_id} ({dim}-d). Use the same encoder settings, move the stores to the new "
                f"model with `sludge migrate`, or use a new data directory (SLUDGE_DATA_DIR) for it"
            )

    def claim(self, model_id: str, dim: int) -> None:
        """Inside a write transaction: set the model on first write, refuse another later."""
        self.check(model_id, dim)
        if self.model_id is None:
            set_meta(self.conn, "model_id", model_id)
            set_meta(self.conn, "dim", str(dim))


class GuardedStore:
    """The model a store answers for: the one recorded in it, else the one it was opened with."""

    _guard: ModelGuard
    _want_model: str | None
    _want_dim: int | None

    @property
    def model_id(self) -> str | None:
        return self._guard.model_id or self._want_model

    @property
    def dim(self) -> int | None:
        return self._guard.dim or self._want_dim
