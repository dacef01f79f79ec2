"""The exemplar bank in Redis: HASH documents, a RediSearch HNSW index behind an alias.

Layout (``P`` is ``key_prefix``; every key of one bank starts with it):

- ``P:meta`` (HASH): the live generation, its physical index, model id and
  dimension, the HNSW parameters it was built with.
- ``P:g{N}:ex:{exemplar_id}`` (HASH): one exemplar of generation N: its
  fields, ``embedding`` (FLOAT32, the encoder's dimension) and, for images and
  frames, ``pdq_vec`` (the PDQ hash as 256 ±1 floats). A disabled exemplar
  keeps its vectors under ``embedding_off`` / ``pdq_off``, fields the index
  does not cover: the HNSW graph then holds enabled exemplars only, so an
  unfiltered KNN needs no filter at all (a filter matching everything would
  push RediSearch into its slower hybrid mode).
- ``{index_name}-g{N}``: the RediSearch index over ``P:g{N}:ex:``; the alias
  ``index_name`` points at the live one, and every query goes through the
  alias. A rebuild (new encoder or new HNSW parameters) fills generation N+1
  beside the live one and swaps the alias in the same MULTI that updates
  ``P:meta``, so queries never see a half-built index.
- ``P:policies`` (HASH): policy name -> JSON.
- ``P:audit`` (STREAM): append-only log of every change, written in the same
  MULTI/EXEC as the change it describes.

Why the pieces are as they are:

- Scores: RediSearch COSINE returns a distance 1 - cos in [0, 2]; it is turned
  into the cosine similarity every backend reports by
  :func:`search.scores.from_cosine_distance`, here and nowhere else.
- PDQ near-duplicates use the index too: for ±1 vectors the squared L2
  distance is 4 × the Hamming distance, so a FLAT (exact) L2 range query of
  radius 4 × 31 finds exactly the hashes within 31 bits.
- Writes are MULTI/EXEC transactions under WATCH of ``P:meta`` and the rebuild
  lock, so a change lands whole (document and audit entry) or not at all, and
  never in a generation that a concurrent rebuild is replacing.
- Every call is bounded: socket timeouts, a few retries with backoff (tenacity)
  on connection loss and LOADING, then a :class:`StoreError` that says what to
  do. Queries run with ``DIALECT 2`` (RedisVL's default) on a RESP2
  connection, so reply shapes do not depend on the client's default protocol.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.commands.search import reducers
from redis.commands.search.aggregation import AggregateRequest
from redis.retry import Retry
from redisvl.index import SearchIndex
from redisvl.query import FilterQuery, VectorQuery, VectorRangeQuery
from redisvl.query.filter import FilterExpression, Num, Tag
from redisvl.schema import IndexSchema
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from indexer.errors import SludgeError
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
from search.errors import ModelMismatchError, NotFoundError, StoreError
from search.scores import from_cosine_distance
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

SCHEMA_VERSION = 1
PDQ_DIM = 256
_FIELDS = ["exemplar_id", "policy", "kind", "source", "content_hash", "note", "added_by", "added_at",
           "enabled", "model_id", "pdq", "pdq_quality"]
_MATCH_FIELDS = ["exemplar_id", "policy", "kind", "source"]
_PAGE = 1000

T = TypeVar("T")


class RedisBankSettings(Protocol):
    """What the bank reads from its settings (ops.config.RedisSettings has these; search never imports ops)."""

    index_name: str
    key_prefix: str
    hnsw_m: int
    hnsw_ef_construction: int
    hnsw_ef_runtime: int
    socket_timeout_s: float
    retries: int


@dataclass
class RedisBankConfig:
    """Plain settings for code outside the CLI (tests, benchmarks); same defaults as RedisSettings."""

    index_name: str = "sludge-bank"
    key_prefix: str = "sludge:bank"
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    hnsw_ef_runtime: int = 64
    socket_timeout_s: float = 5.0
    retries: int = 3


def build_schema(name: str, prefix: str, dim: int, m: int, ef_construction: int,
                 ef_runtime: int) -> IndexSchema:
    """The index of one generation. Tags for exact filters, the vectors, text for people."""
    return IndexSchema.from_dict({
        "index": {"name": name, "prefix": prefix, "key_separator": ":", "storage_type": "hash"},
        "fields": [
            {"name": "exemplar_id", "type": "tag"},
            {"name": "policy", "type": "tag"},
            {"name": "kind", "type": "tag"},
            {"name": "enabled", "type": "tag"},
            {"name": "model_id", "type": "tag"},
            {"name": "content_hash", "type": "tag"},
            {"name": "added_by", "type": "tag"},
            {"name": "added_at", "type": "numeric", "attrs": {"sortable": True}},
            {"name": "pdq_quality", "type": "numeric"},
            {"name": "source", "type": "text"},
            {"name": "note", "type": "text"},
            {"name": "embedding", "type": "vector", "attrs": {
                "dims": dim, "algorithm": "hnsw", "distance_metric": "cosine", "datatype": "float32",
                "m": m, "ef_construction": ef_construction, "ef_runtime": ef_runtime}},
            {"name": "pdq_vec", "type": "vector", "attrs": {
                "dims": PDQ_DIM, "algorithm": "flat", "distance_metric": "l2", "datatype": "float32"}},
        ],
    })


def _walk(exc: BaseException) -> Iterator[BaseException]:
    """The exception and its causes (RedisVL wraps redis-py's errors in its own)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _retryable(exc: BaseException) -> bool:
    # BusyLoadingError (LOADING after a restart) is a ConnectionError in redis-py.
    return any(isinstance(e, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError))
               for e in _walk(exc)) and not isinstance(exc, SludgeError)


def _is_missing_index(exc: BaseException) -> bool:
    return any(isinstance(e, redis.exceptions.ResponseError)
               and ("no such index" in str(e).lower() or "unknown index name" in str(e).lower())
               for e in _walk(exc))


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class RedisBank(ExemplarBank):
    """The exemplar bank on Redis (RediSearch HNSW through RedisVL)."""

    backend = "redis"

    def __init__(self, url: str, settings: RedisBankSettings, *, model_id: str | None = None,
                 dim: int | None = None) -> None:
        self.settings = settings
        self.ef_runtime = int(settings.hnsw_ef_runtime)  # per query; benchmarks change it
        #: Filtered KNN strategy. RediSearch's own choice ("auto") brute-forces the filtered
        #: set (ADHOC_BF) even when it holds thousands of vectors: p50 4-5 ms for one policy
        #: of 2k (of 20k) or 10k (of 100k) 512-d exemplars on the 2-core dev machine, where
        #: filtered HNSW batches (BATCHES) took 1.5 ms at recall 0.995 (bench/bank_knn.py).
        #: "adaptive" uses BATCHES when the policies filtered on hold at least
        #: ``BATCHES_FROM`` (1,000) enabled exemplars (counts cached for 30 s), else lets RediSearch
        #: choose (exact brute force is fast and exact on small sets).
        self.hybrid_policy: str = "adaptive"
        self._counts_cache: tuple[float, dict[str, dict[str, int]]] | None = None
        self._retries = int(settings.retries)
        self._local = threading.local()
        try:
            self._r = redis.Redis.from_url(
                url, protocol=2, socket_timeout=settings.socket_timeout_s,
                socket_connect_timeout=settings.socket_timeout_s,
                retry=Retry(NoBackoff(), 0),  # tenacity does the retrying, bounded, in one place
            )
        except ValueError as e:
            raise StoreError(f"cannot use SLUDGE_REDIS_URL: {e}") from None
        kw = self._r.connection_pool.connection_kwargs
        self.location = (f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"
                         if "path" not in kw else kw["path"])
        p = settings.key_prefix
        self._meta_key, self._pol_key = f"{p}:meta", f"{p}:policies"
        self._audit_key, self._lock_key = f"{p}:audit", f"{p}:rebuilding"
        self._labels_key = f"{p}:labels"
        self._want_model, self._want_dim = model_id, dim
        self._meta: dict[str, str] = {}
        self._guarded(self._load_meta)
        have = self._meta.get("model_id")
        if model_id is not None and have is not None and (
                have != model_id or (dim is not None and int(self._meta["dim"]) != dim)):
            raise ModelMismatchError(
                f"the exemplar bank in Redis at {self.location} (index {settings.index_name}) holds "
                f"embeddings of {have} ({self._meta.get('dim')}-d); this run uses {model_id} ({dim}-d). "
                f"Move the bank and the history to it with `sludge migrate`, re-embed the bank alone with "
                f"`sludge bank reindex`, or use another "
                f"SLUDGE_REDIS__INDEX_NAME and SLUDGE_REDIS__KEY_PREFIX for the new model"
            )
        self._live = SearchIndex(self._schema(settings.index_name, 1, self.dim or 1), redis_client=self._r)

    # -- plumbing -------------------------------------------------------------------

    def _guarded(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one bank operation with bounded retries; every failure becomes a StoreError.

        Nested operations (add → get_policy) retry only at the outermost level,
        so the worst case stays (retries + 1) attempts of a few seconds each.
        """
        if getattr(self._local, "depth", 0):
            return fn(*args, **kwargs)
        self._local.depth = 1
        try:
            for attempt in Retrying(stop=stop_after_attempt(self._retries + 1),
                                    wait=wait_exponential(multiplier=0.25, max=2.0),
                                    retry=retry_if_exception(_retryable), reraise=True):
                with attempt:
                    return fn(*args, **kwargs)
        except SludgeError:
            raise
        except Exception as e:
            raise self._translate(e) from None
        finally:
            self._local.depth = 0
        raise AssertionError("unreachable")

    def _translate(self, exc: Exception) -> StoreError:
        tries = f" after {self._retries + 1} attempts" if self._retries else ""
        for e in _walk(exc):
            if isinstance(e, redis.exceptions.BusyLoadingError):
                return StoreError(f"Redis at {self.location} is still loading its data after a restart"
                                  f"{tries}; retry in a few seconds")
            if isinstance(e, redis.exceptions.AuthenticationError):
                return StoreError(f"Redis at {self.location} refused the credentials in SLUDGE_REDIS_URL")
            if isinstance(e, redis.exceptions.TimeoutError):
                return StoreError(f"Redis at {self.location} did not answer within "
                                  f"{self.settings.socket_timeout_s:g} s{tries}")
            if isinstance(e, redis.exceptions.ConnectionError):
                return StoreError(f"cannot reach Redis at {self.location}{tries} ({_s(e) or type(e).__name__}); "
                                  "start it with `sludge services start redis` or check SLUDGE_REDIS_URL")
            if isinstance(e, redis.exceptions.ResponseError):
                msg = _s(e)
                if "unknown command" in msg.lower() and "ft." in msg.lower():
                    return StoreError(f"Redis at {self.location} has no query engine (RediSearch); "
                                      "use Redis 8 or redis-stack (`sludge services start redis`)")
                if "timeout" in msg.lower():
                    return StoreError(f"a search in Redis at {self.location} hit the server's query timeout "
                                      "and was stopped (ON_TIMEOUT FAIL) rather than return partial results")
                return StoreError(f"Redis at {self.location} refused the operation: {msg}")
        return StoreError(f"Redis bank at {self.location}: {type(exc).__name__}: {exc}")

    def _load_meta(self) -> dict[str, str]:
        raw = self._r.hgetall(self._meta_key)
        self._meta = {_s(k): _s(v) for k, v in raw.items()}
        return self._meta

    def _schema(self, name: str, gen: int, dim: int, m: int | None = None,
                ef_construction: int | None = None) -> IndexSchema:
        return build_schema(name, self._prefix(gen), dim, m or self.settings.hnsw_m,
                            ef_construction or self.settings.hnsw_ef_construction, self.ef_runtime)

    def _prefix(self, gen: int) -> str:
        return f"{self.settings.key_prefix}:g{gen}:ex"

    def _doc_key(self, gen: int, eid: str) -> str:
        return f"{self._prefix(gen)}:{eid}"

    def _physical(self, gen: int) -> str:
        return f"{self.settings.index_name}-g{gen}"

    @property
    def generation(self) -> int:
        return int(self._meta.get("generation", 0))

    @property
    def model_id(self) -> str | None:  # type: ignore[override]
        return self._meta.get("model_id") or self._want_model

    @property
    def dim(self) -> int | None:  # type: ignore[override]
        d = self._meta.get("dim")
        return int(d) if d else self._want_dim

    def _check_not_rebuilding(self, pipe: Any) -> None:
        holder = pipe.get(self._lock_key)
        if holder:
            raise StoreError(f"the bank is being rebuilt ({_s(holder)}); changes are refused until the new "
                             "index is live. Retry when `sludge bank info` shows no rebuild")

    def _audit_fields(self, actor: str | None, action: str, target: str, before: dict | None,
                      after: dict | None) -> dict[str, str]:
        return {"ts": repr(time.time()), "actor": actor or default_actor(), "action": action, "target": target,
                "before": json.dumps(before) if before is not None else "",
                "after": json.dumps(after) if after is not None else ""}

    def _transact(self, body: Callable[[Any], T]) -> T:
        """WATCH meta + rebuild lock, run ``body`` (reads, then ``pipe.multi()`` and writes), EXEC.

        ``body`` may return before calling multi() (nothing to write). A
        concurrent change of the watched keys restarts it from the reads.
        """
        with self._r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(self._meta_key, self._lock_key)
                    out = body(pipe)
                    if pipe.explicit_transaction:
                        pipe.execute()
                    else:
                        pipe.unwatch()
                    return out
                except redis.exceptions.WatchError:
                    continue

    # -- policies ---------------------------------------------------------------------

    def put_policy(self, policy: Policy, *, actor: str | None = None) -> Policy:
        policy.check()

        def body(pipe: Any) -> Policy:
            self._check_not_rebuilding(pipe)
            raw = pipe.hget(self._pol_key, policy.name)
            before = _policy(raw) if raw else None
            now = time.time()
            got = Policy(policy.name, float(policy.threshold), policy.rule, policy.description,
                         (before.created_at if before else None) or policy.created_at or now, now)
            pipe.multi()
            pipe.hset(self._pol_key, policy.name, json.dumps(got.to_dict()))
            pipe.xadd(self._audit_key, self._audit_fields(
                actor, "policy.update" if before else "policy.create", policy.name,
                before.to_dict() if before else None, got.to_dict()))
            return got

        return self._guarded(self._transact, body)

    def get_policy(self, name: str) -> Policy | None:
        raw = self._guarded(self._r.hget, self._pol_key, name)
        return _policy(raw) if raw else None

    def list_policies(self) -> list[Policy]:
        raw = self._guarded(self._r.hgetall, self._pol_key)
        return sorted((_policy(v) for v in raw.values()), key=lambda p: p.name)

    # -- exemplars -----------------------------------------------------------------------

    def _ensure_index(self, dim: int, model_id: str) -> None:
        """Create generation 1 and the alias on the first write (the dimension is known then)."""
        if self._load_meta().get("generation"):
            return
        if not self._r.hsetnx(self._meta_key, "generation", 1):
            self._load_meta()
            return  # another process created it
        s = self.settings
        schema = self._schema(self._physical(1), 1, dim)
        SearchIndex(schema, redis_client=self._r).create(overwrite=True, drop=True)
        self._alias_point(self._physical(1))
        self._r.hset(self._meta_key, mapping={
            "index": self._physical(1), "model_id": model_id, "dim": dim, "m": s.hnsw_m,
            "ef_construction": s.hnsw_ef_construction, "schema_version": SCHEMA_VERSION,
            "created_at": repr(time.time())})
        self._load_meta()

    def _alias_point(self, physical: str, pipe: Any = None) -> None:
        target = pipe if pipe is not None else self._r
        # FT.ALIASUPDATE creates the alias or moves it; RedisVL has no alias API.
        target.execute_command("FT.ALIASUPDATE", self.settings.index_name, physical)

    def add(self, exemplar: Exemplar, vector: np.ndarray, *, actor: str | None = None) -> AddResult:
        return self._guarded(self._add, exemplar, vector, actor)

    def _add(self, exemplar: Exemplar, vector: np.ndarray, actor: str | None) -> AddResult:
        self._load_meta()
        v = self._check_vector(exemplar, vector)
        self.require_policy(exemplar.policy)
        exemplar.exemplar_id = exemplar_id(exemplar.policy, exemplar.kind, exemplar.content_hash)
        exemplar.added_at = exemplar.added_at or time.time()
        exemplar.added_by = exemplar.added_by or actor or default_actor()
        self._ensure_index(int(v.shape[0]), exemplar.model_id)

        def body(pipe: Any) -> AddResult:
            self._check_not_rebuilding(pipe)
            meta = {_s(k): _s(x) for k, x in pipe.hgetall(self._meta_key).items()}
            self._meta = meta
            if meta.get("model_id") != exemplar.model_id or int(meta["dim"]) != v.shape[0]:
                raise ModelMismatchError(
                    f"{exemplar.kind} exemplar {exemplar.source[:60]!r}: {exemplar.model_id} "
                    f"({v.shape[0]}-d) vectors cannot go into a bank of {meta.get('model_id')} ({meta.get('dim')}-d)")
            key = self._doc_key(int(meta["generation"]), exemplar.exemplar_id)
            pipe.watch(key)
            if pipe.exists(key):
                return AddResult(_exemplar(pipe.hgetall(key)), created=False)
            pipe.multi()
            pipe.hset(key, mapping=_doc(exemplar, v))
            pipe.xadd(self._audit_key, self._audit_fields(actor or exemplar.added_by, "exemplar.add",
                                                          exemplar.exemplar_id, None, exemplar_public(exemplar)))
            return AddResult(exemplar, created=True)

        return self._transact(body)

    def add_many(self, items: list[tuple[Exemplar, np.ndarray]], *, actor: str | None = None,
                 chunk: int = 500) -> list[AddResult]:
        """Bulk add: all items are checked first, then written in pipelined MULTI/EXEC chunks.

        Each chunk (documents and their audit entries) lands whole; a chunk
        already written stays written if a later one fails, and since adds are
        idempotent, running the same call again completes it.
        """
        return self._guarded(self._add_many, items, actor, chunk)

    def _add_many(self, items: list[tuple[Exemplar, np.ndarray]], actor: str | None,
                  chunk: int) -> list[AddResult]:
        if not items:
            return []
        self._load_meta()
        known = {p.name for p in self.list_policies()}
        prepared = []
        for ex, vec in items:
            v = self._check_vector(ex, vec)
            if ex.policy not in known:
                self.require_policy(ex.policy)
            ex.exemplar_id = exemplar_id(ex.policy, ex.kind, ex.content_hash)
            ex.added_at = ex.added_at or time.time()
            ex.added_by = ex.added_by or actor or default_actor()
            prepared.append((ex, v))
        first_ex, first_v = prepared[0]
        self._ensure_index(int(first_v.shape[0]), first_ex.model_id)
        if self._meta.get("model_id") != first_ex.model_id or int(self._meta["dim"]) != first_v.shape[0]:
            self._check_vector(first_ex, first_v)  # raises the model mismatch with the item named
        out: list[AddResult] = []
        for i in range(0, len(prepared), chunk):
            part = prepared[i:i + chunk]

            def body(pipe: Any, part=part) -> list[AddResult]:
                self._check_not_rebuilding(pipe)
                gen = int(_s(pipe.hget(self._meta_key, "generation")))
                keys = [self._doc_key(gen, ex.exemplar_id) for ex, _ in part]
                with self._r.pipeline(transaction=False) as probe:
                    for k in keys:
                        probe.exists(k)
                    present = probe.execute()
                res = []
                pipe.multi()
                seen: set[str] = set()
                for (ex, v), key, there in zip(part, keys, present):
                    if there or key in seen:
                        res.append(AddResult(ex, created=False))
                        continue
                    seen.add(key)
                    pipe.hset(key, mapping=_doc(ex, v))
                    pipe.xadd(self._audit_key, self._audit_fields(actor or ex.added_by, "exemplar.add",
                                                                  ex.exemplar_id, None, exemplar_public(ex)))
                    res.append(AddResult(ex, created=True))
                return res

            out.extend(self._transact(body))
        return out

    def get(self, exemplar_id: str) -> Exemplar | None:
        def run() -> Exemplar | None:
            gen = int(self._load_meta().get("generation", 0))
            if not gen:
                return None
            raw = self._r.hgetall(self._doc_key(gen, exemplar_id))
            return _exemplar(raw) if raw else None

        return self._guarded(run)

    def resolve(self, ident: str) -> Exemplar:
        """Exact id, or a unique prefix of 4+ characters (a TAG prefix query, not a scan)."""
        def run() -> Exemplar:
            found = self.get(ident)
            if found:
                return found
            if len(ident) < 4 or not ident.isalnum():
                raise NotFoundError(f"no exemplar with id {ident!r}")
            q = FilterQuery(return_fields=_FIELDS, filter_expression=Tag("exemplar_id") % f"{ident}*",
                            num_results=2)
            rows = self._query(q)
            if len(rows) > 1:
                raise StoreError(f"exemplar id prefix {ident!r} is ambiguous; give more characters")
            if not rows:
                raise NotFoundError(f"no exemplar with id {ident!r}")
            return _exemplar(rows[0])

        return self._guarded(run)

    def _query(self, q: Any) -> list[dict[str, Any]]:
        try:
            return self._live.query(q)
        except Exception as e:
            if _is_missing_index(e):
                return []  # nothing was ever added
            raise

    def list(self, policy: str | None = None, enabled: bool | None = None,
             kind: str | None = None) -> list[Exemplar]:
        def run() -> list[Exemplar]:
            f: FilterExpression | None = None
            for cond in ((Tag("policy") == policy) if policy is not None else None,
                         (Tag("enabled") == ("1" if enabled else "0")) if enabled is not None else None,
                         (Tag("kind") == kind) if kind is not None else None):
                if cond is not None:
                    f = cond if f is None else (f & cond)
            out: list[Exemplar] = []
            offset = 0
            while True:
                q = FilterQuery(return_fields=_FIELDS, filter_expression=f, num_results=_PAGE)
                q.paging(offset, _PAGE)
                rows = self._query(q)
                out.extend(_exemplar(r) for r in rows)
                if len(rows) < _PAGE:
                    break
                offset += _PAGE
            out.sort(key=lambda e: (e.policy, e.added_at, e.exemplar_id))
            return out

        return self._guarded(run)

    def counts(self) -> dict[str, dict[str, int]]:
        def run() -> dict[str, dict[str, int]]:
            req = AggregateRequest("*").group_by(["@policy", "@enabled"], reducers.count().alias("n"))
            try:
                res = self._live.aggregate(req)
            except Exception as e:
                if _is_missing_index(e):
                    return {}
                raise
            out: dict[str, dict[str, int]] = {}
            for row in res.rows:
                d = {_s(row[i]): _s(row[i + 1]) for i in range(0, len(row), 2)}
                c = out.setdefault(d["policy"], {"total": 0, "enabled": 0})
                c["total"] += int(d["n"])
                if d.get("enabled") == "1":
                    c["enabled"] += int(d["n"])
            return dict(sorted(out.items()))

        return self._guarded(run)

    def remove(self, exemplar_id: str, *, actor: str | None = None) -> Exemplar:
        def run() -> Exemplar:
            ex = self.resolve(exemplar_id)

            def body(pipe: Any) -> Exemplar:
                self._check_not_rebuilding(pipe)
                gen = int(_s(pipe.hget(self._meta_key, "generation") or b"0"))
                pipe.multi()
                pipe.delete(self._doc_key(gen, ex.exemplar_id))
                pipe.xadd(self._audit_key, self._audit_fields(actor, "exemplar.remove", ex.exemplar_id,
                                                              exemplar_public(ex), None))
                return ex

            return self._transact(body)

        return self._guarded(run)

    def set_enabled(self, exemplar_id: str, enabled: bool, *, actor: str | None = None) -> Exemplar:
        def run() -> Exemplar:
            ex = self.resolve(exemplar_id)
            if ex.enabled == enabled:
                return ex

            def body(pipe: Any) -> Exemplar:
                self._check_not_rebuilding(pipe)
                gen = int(_s(pipe.hget(self._meta_key, "generation") or b"0"))
                key = self._doc_key(gen, ex.exemplar_id)
                pipe.watch(key)
                if not pipe.exists(key):
                    raise StoreError(f"exemplar {ex.exemplar_id} was removed meanwhile")
                before = exemplar_public(ex)
                ex.enabled = enabled
                moves = {}
                for name in ("embedding", "pdq_vec"):
                    src, dst = _vec_field(name, not enabled), _vec_field(name, enabled)
                    blob = pipe.hget(key, src)
                    if blob is not None:
                        moves[src] = (dst, blob)
                pipe.multi()
                pipe.hset(key, "enabled", "1" if enabled else "0")
                for src, (dst, blob) in moves.items():  # in or out of the vector index
                    pipe.hset(key, dst, blob)
                    pipe.hdel(key, src)
                pipe.xadd(self._audit_key, self._audit_fields(
                    actor, "exemplar.enable" if enabled else "exemplar.disable", ex.exemplar_id, before,
                    exemplar_public(ex)))
                return ex

            return self._transact(body)

        return self._guarded(run)

    def vectors(self, exemplar_ids: list[str]) -> dict[str, np.ndarray]:
        def run() -> dict[str, np.ndarray]:
            gen = int(self._load_meta().get("generation", 0))
            if not gen or not exemplar_ids:
                return {}
            with self._r.pipeline(transaction=False) as pipe:
                for eid in exemplar_ids:
                    pipe.hmget(self._doc_key(gen, eid), ["embedding", "embedding_off"])
                raw = pipe.execute()
            return {eid: np.frombuffer(b[0] or b[1], dtype=np.float32).copy()
                    for eid, b in zip(exemplar_ids, raw) if b[0] or b[1]}

        return self._guarded(run)

    # -- matching --------------------------------------------------------------------------

    @staticmethod
    def _filter(policies: list[str] | None, extra: FilterExpression | None = None) -> FilterExpression | None:
        """Only the policy (and extra) filter: disabled exemplars are not in the vector index at all."""
        f: FilterExpression | None = (Tag("policy") == list(policies)) if policies is not None else None
        if extra is not None:
            f = extra if f is None else (f & extra)
        return f

    def knn(self, vectors: np.ndarray, k: int, policies: list[str] | None = None) -> list[list[Match]]:
        self._check_k(k)
        q = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if policies is not None and not policies:
            return [[] for _ in range(q.shape[0])]
        if self.dim is not None and q.shape[1] != self.dim:
            raise StoreError(f"query vectors have {q.shape[1]} dimensions; the bank holds {self.dim}-d vectors "
                             f"of {self.model_id}")
        flt = self._filter(policies)
        hybrid = self._hybrid_for(policies) if flt is not None else None
        ef = None if hybrid == "ADHOC_BF" else self.ef_runtime  # brute force takes no EF_RUNTIME
        queries = [VectorQuery(row.tobytes(), "embedding", return_fields=_MATCH_FIELDS, filter_expression=flt,
                               num_results=k, ef_runtime=ef, hybrid_policy=hybrid)
                   for row in q]
        results = self._guarded(self._batch, queries)
        return [[Match(_s(r["exemplar_id"]), _s(r["policy"]), _s(r["kind"]), _s(r["source"]),
                       from_cosine_distance(float(r["vector_distance"])))
                 for r in rows] for rows in results]

    BATCHES_FROM = 1000

    def _hybrid_for(self, policies: list[str] | None) -> str | None:
        mode = self.hybrid_policy
        if mode in ("BATCHES", "ADHOC_BF"):
            return mode
        if mode != "adaptive" or policies is None:
            return None
        now = time.monotonic()
        if self._counts_cache is None or now - self._counts_cache[0] > 30.0:
            self._counts_cache = (now, self.counts())
        size = sum(self._counts_cache[1].get(p, {}).get("enabled", 0) for p in policies)
        return "BATCHES" if size >= self.BATCHES_FROM else None

    def _batch(self, queries: list[Any]) -> list[list[dict[str, Any]]]:
        if not queries:
            return []
        try:
            return self._live.batch_query(queries, batch_size=64)
        except Exception as e:
            if _is_missing_index(e):
                return [[] for _ in queries]
            raise

    def pdq_match(self, hashes: list[tuple[str, int] | None], policies: list[str] | None = None, *,
                  max_distance: int = MATCH_DISTANCE, min_quality: int = MIN_QUALITY) -> list[list[Match]]:
        wanted = [i for i, h in enumerate(hashes) if h is not None and h[1] >= min_quality]
        out: list[list[Match]] = [[] for _ in hashes]
        if not wanted or (policies is not None and not policies):
            return out
        flt = self._filter(policies, Num("pdq_quality") >= min_quality)
        bits = pdq_bits([hashes[i][0] for i in wanted])  # type: ignore[index]
        signs = (bits.astype(np.float32) * 2.0 - 1.0)
        # squared L2 between ±1 vectors is 4 × Hamming; the half keeps distance 31 itself inside
        radius = 4.0 * max_distance + 0.5
        queries = [VectorRangeQuery(row.tobytes(), "pdq_vec", return_fields=_MATCH_FIELDS, filter_expression=flt,
                                    distance_threshold=radius, num_results=1000) for row in signs]
        results = self._guarded(self._batch, queries)
        for i, rows in zip(wanted, results):
            ms = []
            for r in rows:
                d = int(round(float(r["vector_distance"]) / 4.0))
                ms.append(Match(_s(r["exemplar_id"]), _s(r["policy"]), _s(r["kind"]), _s(r["source"]),
                                pdq_score(d), "pdq", d))
            ms.sort(key=lambda m: (m.distance, m.exemplar_id))
            out[i] = ms
        return out

    # -- labels -------------------------------------------------------------------------------

    def _store_label(self, label: Label) -> None:
        def run() -> None:
            fields = {k: ("" if v is None else json.dumps(v) if k == "score" else str(v))
                      for k, v in label.to_dict().items()}
            with self._r.pipeline(transaction=True) as pipe:  # the label and its audit entry, together
                pipe.xadd(self._labels_key, fields)
                pipe.xadd(self._audit_key, self._audit_fields(label.reviewer, f"label.{label.verdict}",
                                                              label.policy, None, label.to_dict()))
                pipe.execute()

        self._guarded(run)

    def labels(self, policy: str | None = None, video_id: str | None = None) -> list[Label]:
        def run() -> list[Label]:
            out = []
            for _eid, raw in self._r.xrange(self._labels_key):
                f = {_s(k): _s(v) for k, v in raw.items()}
                if (policy is not None and f["policy"] != policy) or (video_id is not None
                                                                      and f["video_id"] != video_id):
                    continue
                out.append(Label(f["policy"], f["video_id"], f["verdict"], f["reviewer"], f["subject"],
                                 json.loads(f["score"]) if f.get("score") else None, f.get("path") or None,
                                 f.get("note", ""), f["label_id"], float(f["at"])))
            return out

        return self._guarded(run)

    # -- audit --------------------------------------------------------------------------------

    def audit(self, limit: int = 100, target: str | None = None) -> list[AuditEntry]:
        def run() -> list[AuditEntry]:
            out: list[AuditEntry] = []
            page = max(limit, 200)
            end = "+"
            while len(out) < limit:
                batch = self._r.xrevrange(self._audit_key, max=end, min="-", count=page)
                for entry_id, fields in batch:
                    f = {_s(k): _s(v) for k, v in fields.items()}
                    if target is not None and f.get("target") != target:
                        continue
                    out.append(AuditEntry(_s(entry_id), float(f["ts"]), f["actor"], f["action"], f["target"],
                                          json.loads(f["before"]) if f.get("before") else None,
                                          json.loads(f["after"]) if f.get("after") else None))
                    if len(out) >= limit:
                        break
                if len(batch) < page:
                    break
                end = "(" + _s(batch[-1][0])  # exclusive: continue below the last entry seen
            return out

        return self._guarded(run)

    # -- rebuild -------------------------------------------------------------------------------

    def rebuild(self, model_id: str, dim: int, reembed: Reembed, *,
                actor: str | None = None, keep_previous: bool = False, owner: str | None = None) -> RebuildReport:
        return self._guarded(self._rebuild, model_id, dim, reembed, actor, keep_previous, owner)

    def _rebuild(self, model_id: str, dim: int, reembed: Reembed, actor: str | None, keep_previous: bool,
                 owner: str | None) -> RebuildReport:
        t0 = time.perf_counter()
        mark = f"[{owner}] " if owner else ""
        token = f"{mark}by {actor or default_actor()} since {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC"
        if not self._r.set(self._lock_key, token, nx=True, ex=3600):
            held = _s(self._r.get(self._lock_key) or b"")
            if not (owner and held.startswith(mark)):  # a killed run of the same migration: take it over
                raise StoreError(f"another rebuild is running ({held})")
            self._r.set(self._lock_key, token, ex=3600)
        new_physical = None
        try:
            meta = self._load_meta()
            old_gen = int(meta.get("generation", 0))
            old_model, old_dim = meta.get("model_id"), int(meta["dim"]) if meta.get("dim") else None
            same = old_model == model_id and old_dim == dim
            new_gen = old_gen + 1
            new_physical = self._physical(new_gen)
            new_index = SearchIndex(self._schema(new_physical, new_gen, dim), redis_client=self._r)
            new_index.create(overwrite=True, drop=True)  # a leftover of a failed rebuild goes first
            n = reembedded = 0
            if old_gen:
                for keys in self._scan_batches(f"{self._prefix(old_gen)}:*"):
                    with self._r.pipeline(transaction=False) as pipe:
                        for k in keys:
                            pipe.hgetall(k)
                        docs = pipe.execute()
                    with self._r.pipeline(transaction=False) as pipe:
                        for raw in docs:
                            if not raw:
                                continue
                            ex = _exemplar(raw)
                            old_vec = (np.frombuffer(raw.get(b"embedding") or raw[b"embedding_off"], np.float32)
                                       if same else None)
                            try:
                                v = np.asarray(reembed(ex, old_vec), dtype=np.float32).reshape(-1)
                            except SludgeError as e:
                                raise StoreError(f"cannot re-embed {ex.kind} exemplar {ex.exemplar_id} "
                                                 f"({ex.source[:80]}): {e}; the live index is unchanged") from None
                            if v.shape[0] != dim or not np.all(np.isfinite(v)) or not np.linalg.norm(v):
                                raise StoreError(f"re-embedding exemplar {ex.exemplar_id} gave an unusable "
                                                 f"{v.shape[0]}-d vector (expected {dim}-d); the live index is unchanged")
                            ex.model_id = model_id
                            pipe.hset(self._doc_key(new_gen, ex.exemplar_id), mapping=_doc(ex, v / np.linalg.norm(v)))
                            n += 1
                            reembedded += 0 if same else 1
                        pipe.execute()
                    self._r.expire(self._lock_key, 3600)
            self._wait_indexed(new_index, n)
            s = self.settings
            keep = keep_previous and bool(old_gen) and not same and old_model is not None
            dropped_kept = meta.get("kept_generation")
            with self._r.pipeline(transaction=True) as pipe:
                self._alias_point(new_physical, pipe)
                pipe.hset(self._meta_key, mapping={
                    "generation": new_gen, "index": new_physical, "model_id": model_id, "dim": dim,
                    "m": s.hnsw_m, "ef_construction": s.hnsw_ef_construction, "schema_version": SCHEMA_VERSION,
                    "created_at": repr(time.time())})
                pipe.hdel(self._meta_key, "kept_generation", "kept_model_id", "kept_dim")
                if keep:
                    pipe.hset(self._meta_key, mapping={"kept_generation": old_gen, "kept_model_id": old_model,
                                                       "kept_dim": old_dim or 0})
                pipe.xadd(self._audit_key, self._audit_fields(
                    actor, "bank.rebuild", "bank",
                    {"model_id": old_model, "dim": old_dim, "index": meta.get("index"),
                     "m": meta.get("m"), "ef_construction": meta.get("ef_construction")},
                    {"model_id": model_id, "dim": dim, "index": new_physical, "m": s.hnsw_m,
                     "ef_construction": s.hnsw_ef_construction, "exemplars": n}))
                pipe.delete(self._lock_key)
                pipe.execute()
            new_physical = None  # live now: not to be dropped below
            gone = [int(dropped_kept)] if dropped_kept else []
            if old_gen and not keep:
                gone.append(old_gen)
            for g in gone:  # nothing queries these any more
                try:
                    self._r.execute_command("FT.DROPINDEX", self._physical(g), "DD")
                except redis.exceptions.ResponseError:
                    pass
            self._load_meta()
            self._want_model, self._want_dim = model_id, dim
            return RebuildReport(n, reembedded, n - reembedded, old_model, model_id, self._physical(new_gen),
                                 round(time.perf_counter() - t0, 3))
        finally:
            if new_physical is not None:  # failed before the swap: the live index was never touched
                try:
                    self._r.execute_command("FT.DROPINDEX", new_physical, "DD")
                except redis.exceptions.RedisError:
                    pass
                self._r.delete(self._lock_key)

    def kept(self) -> tuple[str, int, dict[str, np.ndarray]] | None:
        def run() -> tuple[str, int, dict[str, np.ndarray]] | None:
            meta = self._load_meta()
            if not meta.get("kept_generation"):
                return None
            gen = int(meta["kept_generation"])
            out: dict[str, np.ndarray] = {}
            for keys in self._scan_batches(f"{self._prefix(gen)}:*"):
                with self._r.pipeline(transaction=False) as pipe:
                    for k in keys:
                        pipe.hmget(k, "exemplar_id", "embedding", "embedding_off")
                    for eid, on, off in pipe.execute():
                        if eid and (on or off):
                            out[_s(eid)] = np.frombuffer(on or off, np.float32).copy()
            return meta["kept_model_id"], int(meta.get("kept_dim") or 0), out

        return self._guarded(run)

    def drop_kept(self, *, actor: str | None = None) -> None:
        def run() -> None:
            meta = self._load_meta()
            if not meta.get("kept_generation"):
                return
            gen = int(meta["kept_generation"])
            with self._r.pipeline(transaction=True) as pipe:
                pipe.hdel(self._meta_key, "kept_generation", "kept_model_id", "kept_dim")
                pipe.xadd(self._audit_key, self._audit_fields(
                    actor, "bank.drop_kept", "bank", {"kept_model_id": meta.get("kept_model_id"),
                                                      "index": self._physical(gen)}, None))
                pipe.execute()
            try:
                self._r.execute_command("FT.DROPINDEX", self._physical(gen), "DD")
            except redis.exceptions.ResponseError:
                pass
            self._load_meta()

        self._guarded(run)

    def _scan_batches(self, pattern: str) -> Iterator[list[bytes]]:
        batch: list[bytes] = []
        for key in self._r.scan_iter(match=pattern, count=_PAGE):
            batch.append(key)
            if len(batch) >= _PAGE:
                yield batch
                batch = []
        if batch:
            yield batch

    def _wait_indexed(self, index: SearchIndex, n: int, timeout_s: float = 600.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            info = index.info()
            if int(info.get("num_docs", 0)) >= n and float(info.get("percent_indexed", 1)) >= 1.0 \
                    and int(info.get("indexing", 0)) == 0:
                return
            if time.monotonic() > deadline:
                raise StoreError(f"the new index {index.name} did not finish indexing within {timeout_s:.0f} s")
            time.sleep(0.1)

    # -- info ------------------------------------------------------------------------------------

    def info(self) -> dict:
        def run() -> dict:
            meta = self._load_meta()
            out: dict[str, Any] = {
                "backend": self.backend, "location": self.location, "alias": self.settings.index_name,
                "key_prefix": self.settings.key_prefix, "index": meta.get("index"),
                "generation": int(meta.get("generation", 0)), "model_id": self.model_id, "dim": self.dim,
                "hnsw_m": int(meta["m"]) if meta.get("m") else None,
                "hnsw_ef_construction": int(meta["ef_construction"]) if meta.get("ef_construction") else None,
                "hnsw_ef_runtime": self.ef_runtime, "rebuilding": _s(self._r.get(self._lock_key) or b"") or None,
                "policies": len(self.list_policies()),
            }
            if meta.get("index"):
                ft = self._live.info()
                out.update(exemplars=int(ft.get("num_docs", 0)),
                           vector_index_mb=float(ft.get("vector_index_sz_mb", 0) or 0),
                           percent_indexed=float(ft.get("percent_indexed", 1)))
                drift = [f"{k} {meta.get(mk)} → {v}" for k, mk, v in (
                    ("M", "m", self.settings.hnsw_m),
                    ("EF_CONSTRUCTION", "ef_construction", self.settings.hnsw_ef_construction))
                    if meta.get(mk) and int(meta[mk]) != v]
                out["settings_differ"] = ", ".join(drift) or None
            else:
                out["exemplars"] = 0
            return out

        return self._guarded(run)

    def ping(self) -> bool:
        return bool(self._guarded(self._r.ping))

    def drop(self) -> None:
        """Delete this bank entirely (every generation, policies, audit). For tests and benchmarks."""
        def run() -> None:
            for name in self._r.execute_command("FT._LIST"):
                n = _s(name)
                if n.startswith(f"{self.settings.index_name}-g"):
                    self._r.execute_command("FT.DROPINDEX", n, "DD")
            try:
                self._r.execute_command("FT.ALIASDEL", self.settings.index_name)
            except redis.exceptions.ResponseError:
                pass
            for keys in self._scan_batches(f"{self.settings.key_prefix}:*"):
                self._r.delete(*keys)
            self._meta = {}

        self._guarded(run)

    def close(self) -> None:
        try:
            self._r.close()
        except redis.exceptions.RedisError:
            pass


# -- documents ----------------------------------------------------------------------------------


_VECTOR_FIELDS = ("embedding", "pdq_vec", "embedding_off", "pdq_off")


def _vec_field(name: str, enabled: bool) -> str:
    """Indexed field while enabled; a field outside the index while disabled."""
    if enabled:
        return name
    return {"embedding": "embedding_off", "pdq_vec": "pdq_off"}[name]


def _doc(ex: Exemplar, v: np.ndarray) -> dict[str, Any]:
    d: dict[str, Any] = {
        "exemplar_id": ex.exemplar_id, "policy": ex.policy, "kind": ex.kind, "source": ex.source,
        "content_hash": ex.content_hash, "note": ex.note, "added_by": ex.added_by,
        "added_at": repr(float(ex.added_at)), "enabled": "1" if ex.enabled else "0", "model_id": ex.model_id,
        _vec_field("embedding", ex.enabled): np.asarray(v, dtype=np.float32).tobytes(),
    }
    if ex.pdq:
        d["pdq"] = ex.pdq.lower()
        d["pdq_quality"] = int(ex.pdq_quality or 0)
        d[_vec_field("pdq_vec", ex.enabled)] = (pdq_bits([ex.pdq.lower()])[0].astype(np.float32) * 2.0 - 1.0).tobytes()
    return d


def _exemplar(raw: dict) -> Exemplar:
    f = {_s(k): v for k, v in raw.items() if _s(k) not in _VECTOR_FIELDS}
    f = {k: _s(v) for k, v in f.items()}
    return Exemplar(
        exemplar_id=f["exemplar_id"], policy=f["policy"], kind=f["kind"],  # type: ignore[arg-type]
        source=f.get("source", ""), content_hash=f.get("content_hash", ""), model_id=f.get("model_id", ""),
        note=f.get("note", ""), added_by=f.get("added_by", ""), added_at=float(f.get("added_at") or 0),
        enabled=f.get("enabled") == "1", pdq=f.get("pdq") or None,
        pdq_quality=int(f["pdq_quality"]) if f.get("pdq_quality") not in (None, "") else None,
    )


def _policy(raw: bytes | str) -> Policy:
    d = json.loads(raw)
    return Policy(d["name"], float(d["threshold"]), Rule.parse(d.get("rule", "best")), d.get("description", ""),
                  d.get("created_at"), d.get("updated_at"))
