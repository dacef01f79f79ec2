"""The exemplar bank seam: curated known-bad content, grouped by policy.

Backends: embedded (faiss + SQLite, :mod:`search.local.bank`) and Redis
(RediSearch HNSW, :mod:`search.redis.bank`). Everything above this interface
(CLI, API, cascade) is written against it alone, and one conformance suite
(tests/test_bank_conformance.py) runs against both backends, so the two
cannot drift apart.

Every change goes through a method that takes the ``actor`` and appends an
:class:`~search.types.AuditEntry`: the audit log is written by the backends
in the same transaction as the change itself, never by callers.
"""

from __future__ import annotations

import abc
import getpass
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from indexer.errors import ConfigError, QueryError
from indexer.pdq import MATCH_DISTANCE, MIN_QUALITY
from search.errors import ModelMismatchError, NotFoundError, StoreError
from search.types import (
    EXEMPLAR_KINDS,
    AddResult,
    AuditEntry,
    Exemplar,
    Label,
    Match,
    Policy,
    RebuildReport,
    check_label,
    check_policy_name,
)

#: (vector or None when it must be re-embedded) -> unit vector of the new model.
#: Called by :meth:`ExemplarBank.rebuild` for each exemplar.
Reembed = Callable[[Exemplar, "np.ndarray | None"], np.ndarray]


def exemplar_id(policy: str, kind: str, content_hash: str) -> str:
    """Deterministic: the same content added to the same policy twice is one exemplar."""
    return hashlib.sha256(f"{policy}\0{kind}\0{content_hash}".encode()).hexdigest()[:20]


def default_actor() -> str:
    """Who a change is attributed to when the caller does not say (the OS user)."""
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def exemplar_public(ex: Exemplar) -> dict:
    """An exemplar as the audit log records it (all fields; vectors are never logged)."""
    return ex.to_dict()


def pdq_bits(hex_hashes: list[str]) -> np.ndarray:
    """(n, 256) uint8 0/1 bits of hex PDQ hashes, most significant bit first."""
    if not hex_hashes:
        return np.zeros((0, 256), np.uint8)
    raw = np.frombuffer(b"".join(bytes.fromhex(h) for h in hex_hashes), dtype=np.uint8)
    return np.unpackbits(raw.reshape(len(hex_hashes), 32), axis=1)


def pdq_score(distance: int) -> float:
    """Hamming distance -> cosine of the hashes as ±1 vectors (1 identical, 0 unrelated)."""
    return 1.0 - float(distance) / 128.0


class ExemplarBank(abc.ABC):
    """Abstract bank. ``model_id``/``dim`` are the encoder this bank's vectors come from."""

    model_id: str | None
    dim: int | None
    #: short name of the backend, shown by `sludge bank info`
    backend: str = "?"

    # -- policies ------------------------------------------------------------
    @abc.abstractmethod
    def put_policy(self, policy: Policy, *, actor: str | None = None) -> Policy:
        """Create or replace a policy (audited as policy.create / policy.update)."""

    @abc.abstractmethod
    def get_policy(self, name: str) -> Policy | None: ...

    @abc.abstractmethod
    def list_policies(self) -> list[Policy]: ...

    def create_policy(self, policy: Policy, *, actor: str | None = None) -> Policy:
        """A new policy; an existing one is an error (use :meth:`put_policy` to change it)."""
        policy.check()
        if self.get_policy(policy.name) is not None:
            raise StoreError(
                f"policy {policy.name!r} already exists; change it with `sludge policy set {policy.name}`"
            )
        now = time.time()
        policy.created_at = policy.created_at or now
        policy.updated_at = now
        return self.put_policy(policy, actor=actor)

    def ensure_policy(self, name: str, threshold: float, *, actor: str | None = None) -> tuple[Policy, bool]:
        """The policy, created with ``threshold`` when new; returns (policy, created)."""
        check_policy_name(name)
        existing = self.get_policy(name)
        if existing is not None:
            return existing, False
        now = time.time()
        return self.put_policy(Policy(name, threshold, created_at=now, updated_at=now), actor=actor), True

    def require_policy(self, name: str) -> Policy:
        """The policy, or a NotFoundError that lists the ones that exist."""
        check_policy_name(name)
        p = self.get_policy(name)
        if p is None:
            names = ", ".join(x.name for x in self.list_policies()) or "none"
            raise NotFoundError(
                f"unknown policy {name!r}; create it first with `sludge policy add {name} --threshold X` "
                f"(policies: {names})"
            )
        return p

    # -- exemplars -----------------------------------------------------------
    @abc.abstractmethod
    def add(self, exemplar: Exemplar, vector: np.ndarray, *, actor: str | None = None) -> AddResult:
        """Add one exemplar; the same content in the same policy again is a no-op (created=False)."""

    def add_many(self, items: list[tuple[Exemplar, np.ndarray]], *,
                 actor: str | None = None) -> list[AddResult]:
        """Add several exemplars; every item is checked before the first is written.

        Backends override this to batch round trips (the Redis bank pipelines
        chunks of MULTI/EXEC); the result is the same as calling :meth:`add` on each.
        """
        for ex, vec in items:
            self._check_vector(ex, vec)
            self.require_policy(ex.policy)
        return [self.add(ex, vec, actor=actor) for ex, vec in items]

    @abc.abstractmethod
    def get(self, exemplar_id: str) -> Exemplar | None: ...

    @abc.abstractmethod
    def list(self, policy: str | None = None, enabled: bool | None = None,
             kind: str | None = None) -> list[Exemplar]:
        """Exemplars matching every given filter, ordered by policy then time added."""

    @abc.abstractmethod
    def counts(self) -> dict[str, dict[str, int]]:
        """Exemplars per policy: ``{policy: {"total": n, "enabled": m}}``."""

    @abc.abstractmethod
    def remove(self, exemplar_id: str, *, actor: str | None = None) -> Exemplar: ...

    @abc.abstractmethod
    def set_enabled(self, exemplar_id: str, enabled: bool, *, actor: str | None = None) -> Exemplar: ...

    @abc.abstractmethod
    def vectors(self, exemplar_ids: list[str]) -> dict[str, np.ndarray]:
        """Stored unit vectors by id (for export); unknown ids are left out."""

    @abc.abstractmethod
    def knn(
        self, vectors: np.ndarray, k: int, policies: list[str] | None = None
    ) -> list[list[Match]]:
        """For each row of ``vectors``, the k nearest enabled exemplars, best first (cosine)."""

    @abc.abstractmethod
    def pdq_match(
        self,
        hashes: list[tuple[str, int] | None],
        policies: list[str] | None = None,
        *,
        max_distance: int = MATCH_DISTANCE,
        min_quality: int = MIN_QUALITY,
    ) -> list[list[Match]]:
        """For each (hex PDQ, quality), the enabled exemplars within ``max_distance`` bits.

        Hasher-Matcher-Actioner's rule: both hashes need quality ≥ ``min_quality``
        (flat or dark frames hash alike and would match everything). ``None`` or a
        low-quality query gives no matches. Matches carry ``signal="pdq"``.
        """

    @abc.abstractmethod
    def audit(self, limit: int = 100, target: str | None = None) -> list[AuditEntry]:
        """The most recent changes, newest first; ``target``: one exemplar id or policy name."""

    def add_label(self, label: Label) -> Label:
        """Record a reviewer's verdict (and its audit entry, ``label.confirm|dismiss`` on the policy)."""
        check_label(label)
        self.require_policy(label.policy)
        label = replace(label, label_id=label.label_id or uuid.uuid4().hex[:20], at=label.at or time.time())
        self._store_label(label)
        return label

    @abc.abstractmethod
    def _store_label(self, label: Label) -> None:
        """Write the label and its audit entry together."""

    @abc.abstractmethod
    def labels(self, policy: str | None = None, video_id: str | None = None) -> list[Label]:
        """Every label, oldest first (optionally of one policy or one video)."""

    def latest_labels(self, policy: str | None = None) -> list[Label]:
        """The label in force per (policy, video): the most recent, unless that one retracts (then none)."""
        latest: dict[tuple[str, str], Label] = {}
        for lab in self.labels(policy):
            latest[(lab.policy, lab.video_id)] = lab
        return [lab for lab in latest.values() if lab.verdict != "retract"]

    @abc.abstractmethod
    def rebuild(self, model_id: str, dim: int, reembed: Reembed, *,
                actor: str | None = None, keep_previous: bool = False, owner: str | None = None) -> RebuildReport:
        """Re-create the vectors (new encoder) or the index (new schema) and switch atomically.

        ``reembed(exemplar, old_vector)`` returns the new vector; ``old_vector``
        is None when the model changes. Queries keep answering from the old
        vectors until the new ones are complete; any failure leaves the bank
        as it was. ``keep_previous``: the old model's vectors stay (see :meth:`kept`)
        so that a migration can be rolled back without embedding anything again;
        a rebuild replaces what an earlier one kept. ``owner``: who may take over
        the rebuild lock that a killed run of the same migration left behind.
        """

    @abc.abstractmethod
    def kept(self) -> tuple[str, int, dict[str, np.ndarray]] | None:
        """(model id, dimension, vectors by exemplar id) kept by the last rebuild, or None."""

    @abc.abstractmethod
    def drop_kept(self, *, actor: str | None = None) -> None:
        """Forget the vectors the last rebuild kept (``sludge migrate --finish``)."""

    @abc.abstractmethod
    def info(self) -> dict:
        """Backend, model, dimension, counts and index parameters, for display."""

    def resolve(self, ident: str) -> Exemplar:
        """Exact id, or a unique prefix of one (ids are long; people type the first few)."""
        found = self.get(ident)
        if found:
            return found
        hits = [e for e in self.list() if e.exemplar_id.startswith(ident)] if len(ident) >= 4 else []
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise StoreError(f"exemplar id prefix {ident!r} is ambiguous; give more characters")
        raise NotFoundError(f"no exemplar with id {ident!r}")

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> "ExemplarBank":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- shared checks -----------------------------------------------------------
    def _check_vector(self, exemplar: Exemplar, vector: np.ndarray) -> np.ndarray:
        if exemplar.kind not in EXEMPLAR_KINDS:
            raise ConfigError(f"unknown exemplar kind {exemplar.kind!r}; expected one of {EXEMPLAR_KINDS}")
        check_policy_name(exemplar.policy)
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        what = f"{exemplar.kind} exemplar {_short(exemplar.source)!r}"
        if self.dim is not None and v.shape[0] != self.dim:
            raise ModelMismatchError(
                f"{what}: vector has {v.shape[0]} dimensions but this bank holds {self.dim}-d vectors "
                f"of {self.model_id}"
            )
        if self.model_id is not None and exemplar.model_id and exemplar.model_id != self.model_id:
            raise ModelMismatchError(
                f"{what}: embedded with {exemplar.model_id} but this bank holds vectors of {self.model_id}; "
                "re-embed it with the bank's encoder"
            )
        if not np.all(np.isfinite(v)) or np.linalg.norm(v) == 0:
            raise ConfigError(f"{what}: vector is zero or not finite")
        if exemplar.pdq is not None:
            if len(exemplar.pdq) != 64 or any(c not in "0123456789abcdef" for c in exemplar.pdq.lower()):
                raise ConfigError(f"{what}: PDQ hash must be 64 hex characters")
        return v / np.linalg.norm(v)

    @staticmethod
    def _check_k(k: int) -> None:
        if k < 1:
            raise QueryError(f"k must be at least 1 (got {k})")


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
