"""The exemplar bank seam: curated known-bad content, grouped by policy.

Backends: embedded (faiss + SQLite, :mod:`search.local.bank`) and, later,
RediSearch. Everything above this interface (CLI, API, cascade) is written
against it alone.
"""

from __future__ import annotations

import abc
import hashlib
import time

import numpy as np

from indexer.errors import ConfigError, ModelMismatchError
from search.types import AddResult, Exemplar, Match, Policy, check_policy_name, EXEMPLAR_KINDS


def exemplar_id(policy: str, kind: str, content_hash: str) -> str:
    """Deterministic: the same content added to the same policy twice is one exemplar."""
    return hashlib.sha256(f"{policy}\0{kind}\0{content_hash}".encode()).hexdigest()[:20]


class ExemplarBank(abc.ABC):
    """Abstract bank. ``model_id``/``dim`` are the encoder this bank's vectors come from."""

    model_id: str | None
    dim: int | None

    # -- policies ------------------------------------------------------------
    @abc.abstractmethod
    def put_policy(self, policy: Policy) -> Policy: ...

    @abc.abstractmethod
    def get_policy(self, name: str) -> Policy | None: ...

    @abc.abstractmethod
    def list_policies(self) -> list[Policy]: ...

    def ensure_policy(self, name: str, threshold: float) -> tuple[Policy, bool]:
        """The policy, created with ``threshold`` when new; returns (policy, created)."""
        check_policy_name(name)
        existing = self.get_policy(name)
        if existing is not None:
            return existing, False
        now = time.time()
        return self.put_policy(Policy(name, threshold, created_at=now, updated_at=now)), True

    # -- exemplars -----------------------------------------------------------
    @abc.abstractmethod
    def add(self, exemplar: Exemplar, vector: np.ndarray) -> AddResult: ...

    @abc.abstractmethod
    def get(self, exemplar_id: str) -> Exemplar | None: ...

    @abc.abstractmethod
    def list(self, policy: str | None = None, enabled: bool | None = None) -> list[Exemplar]: ...

    @abc.abstractmethod
    def remove(self, exemplar_id: str) -> Exemplar: ...

    @abc.abstractmethod
    def set_enabled(self, exemplar_id: str, enabled: bool) -> Exemplar: ...

    @abc.abstractmethod
    def knn(
        self, vectors: np.ndarray, k: int, policies: list[str] | None = None
    ) -> list[list[Match]]:
        """For each row of ``vectors``, the k nearest enabled exemplars, best first."""

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
        if self.dim is not None and v.shape[0] != self.dim:
            raise ModelMismatchError(
                f"vector has {v.shape[0]} dimensions but this bank holds {self.dim}-d vectors of {self.model_id}"
            )
        if not np.all(np.isfinite(v)) or np.linalg.norm(v) == 0:
            raise ConfigError("exemplar vector is zero or not finite")
        return v / np.linalg.norm(v)
