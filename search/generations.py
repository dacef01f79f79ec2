"""Generations of the frame history: one per embedding model, and which one answers.

A vector of one model means nothing to another, so moving the history to a new
model (``sludge migrate``) fills a whole new generation beside the live one
while the live one keeps answering, then switches the pointer in one write and
keeps the old generation until ``--finish`` (``--rollback`` switches back).

The registry is one small JSON record kept with the history itself: a file
beside the embedded store (replaced by an atomic rename), a document in
Elasticsearch (written with optimistic concurrency control, so two migrations
cannot both advance it). It also holds the running migration's cursor, which
is what makes a killed migration resume where it stopped.

Generation names are derived from the model id, so every process that embeds
with a given model finds that model's generation without asking anyone.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from search.errors import StoreError

#: the generation every history had before generations existed (its own, un-suffixed names)
ORIGINAL = ""


def generation_name(model_id: str) -> str:
    """Short, lower-case and safe as a directory or Elasticsearch index name part."""
    return "g-" + hashlib.sha256(model_id.encode()).hexdigest()[:10]


@dataclass
class Generation:
    name: str
    model_id: str | None
    dim: int | None
    #: encoder settings that produce this generation's vectors (model, pretrained, …), when a migration made it
    encoder: dict[str, Any] | None = None


@dataclass
class MigrationState:
    """A migration under way: where it is, what it has done, what it could not do."""

    migration_id: str
    target: Generation
    phase: str = "bank"  # bank -> history -> ready (complete, not switched)
    #: last video id copied, in video id order; copying resumes after it
    cursor: str | None = None
    videos: int = 0
    frames: int = 0
    from_source: int = 0
    from_thumbnails: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # video id -> reason
    started_at: float = 0.0
    updated_at: float = 0.0
    seconds: float = 0.0  # time spent copying, summed over resumed runs


@dataclass
class Registry:
    active: Generation
    previous: Generation | None = None
    migration: MigrationState | None = None
    version: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Registry:
        mig = d.get("migration")
        if mig:
            mig = MigrationState(**{**mig, "target": Generation(**mig["target"])})
        return cls(active=Generation(**d["active"]),
                   previous=Generation(**d["previous"]) if d.get("previous") else None,
                   migration=mig, version=int(d.get("version", 1)))

    def generation_for(self, model_id: str | None) -> Generation:
        """The generation a process embedding with ``model_id`` reads and writes.

        The active one, unless ``model_id`` is the model of the generation kept for rollback
        or of the one a migration is filling (a process still on the old encoder keeps
        answering from the old generation until ``--finish``). An unknown model gets the
        active generation, whose store then refuses it with a model-mismatch error.
        """
        if model_id is None or self.active.model_id in (None, model_id):
            return self.active
        for gen in (self.previous, self.migration.target if self.migration else None):
            if gen is not None and gen.model_id == model_id:
                return gen
        return self.active


class RegistryStore(abc.ABC):
    """Where a history keeps its registry. ``write`` fails if someone else wrote since ``read``."""

    @abc.abstractmethod
    def read(self) -> Registry | None: ...

    @abc.abstractmethod
    def write(self, registry: Registry) -> None: ...

    def prepare(self) -> None:
        """Make the place the registry is written to (before a migration's first write)."""

    def lock(self) -> AbstractContextManager:
        """Held for a whole migration where the store can lock; ``write`` refuses a concurrent writer anyway."""
        return nullcontext()


class ConcurrentMigrationError(StoreError):
    """Another process changed the generation registry in between (two migrations at once?)."""


class FileRegistry(RegistryStore):
    """``generations.json`` in the embedded history's directory; a lock file keeps one migrator."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "generations.json"
        self._seen: tuple[int, int, int] | None = None  # (inode, mtime, size): each write is a new file

    def read(self) -> Registry | None:
        try:
            st = self.path.stat()
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            self._seen = None
            return None
        except (OSError, ValueError) as e:
            raise StoreError(f"cannot read the generation registry {self.path}: {e}") from None
        self._seen = _identity(st)
        return Registry.from_dict(data)

    def write(self, registry: Registry) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            now = _identity(self.path.stat())
        except FileNotFoundError:
            now = None
        if now != self._seen:
            raise ConcurrentMigrationError(f"{self.path} changed since it was read; is another migration running?")
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(registry.to_dict(), indent=1))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)  # readers see the old record or the new one, never half of one
        self._seen = _identity(self.path.stat())

    def lock(self) -> FileLock:
        return FileLock(self.directory / "generations.lock")


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_mtime_ns, st.st_size


class FileLock:
    """An exclusive advisory lock (flock) held by one migrating process; the OS drops it if the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = None

    def __enter__(self) -> FileLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            raise ConcurrentMigrationError(f"another `sludge migrate` holds {self.path}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl

        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()


class ElasticRegistry(RegistryStore):
    """One document in ``{prefix}-generations``, written with if_seq_no/if_primary_term."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.index = f"{prefix}-generations"
        self._seq: tuple[int, int] | None = None

    def read(self) -> Registry | None:
        from elasticsearch import NotFoundError as EsNotFound

        try:
            doc = self.client.get(index=self.index, id="registry")
        except EsNotFound:
            self._seq = None
            return None
        self._seq = (doc["_seq_no"], doc["_primary_term"])
        return Registry.from_dict(json.loads(doc["_source"]["record"]))

    def write(self, registry: Registry) -> None:
        from elasticsearch import ConflictError

        body = {"record": json.dumps(registry.to_dict())}
        try:
            if self._seq is None:
                resp = self.client.create(index=self.index, id="registry", document=body, refresh=True)
            else:
                resp = self.client.index(index=self.index, id="registry", document=body, refresh=True,
                                         if_seq_no=self._seq[0], if_primary_term=self._seq[1])
        except ConflictError:
            raise ConcurrentMigrationError(
                f"the generation registry {self.index} changed since it was read; is another migration running?"
            ) from None
        self._seq = (resp["_seq_no"], resp["_primary_term"])

    def prepare(self) -> None:
        if not self.client.indices.exists(index=self.index):
            try:
                self.client.indices.create(index=self.index, settings={"number_of_shards": 1, "auto_expand_replicas": "0-1"},
                                           mappings={"dynamic": False, "properties": {}})
            except Exception as e:  # created by a concurrent process
                if "resource_already_exists" not in str(e):
                    raise
