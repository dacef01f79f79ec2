"""Which stores a configuration names, opened: the one place that maps settings to a backend class.

Redis for the bank when a Redis URL is given, Elasticsearch for the history when an Elasticsearch URL is
given, the embedded backend (SQLite + faiss) otherwise. Beside the backends so that every caller opens
them the same way; the backend settings sections are passed through as they are (duck-typed:
``search`` does not import ``ops``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from search.bank import ExemplarBank
from search.generations import ORIGINAL, ElasticRegistry, FileRegistry, Generation, Registry, RegistryStore
from search.history import FrameHistory


def open_bank(*, redis_url: str | None, redis: Any, bank_dir: Path, model_id: str | None,
              dim: int | None) -> ExemplarBank:
    """The exemplar bank: RediSearch at ``redis_url`` (settings ``redis``), else the embedded one in
    ``bank_dir``; pinned to ``model_id``/``dim`` when given (None: any, for reading)."""
    if redis_url is not None:
        from search.redis.bank import RedisBank

        return RedisBank(redis_url, redis, model_id=model_id, dim=dim)
    from search.local.bank import LocalBank

    return LocalBank(bank_dir, model_id=model_id, dim=dim)


def open_history(*, es_url: str | None, elastic: Any, history_dir: Path, outbox_dir: Path,
                 model_id: str | None, dim: int | None, generation: Generation | None = None) -> FrameHistory:
    """The frame history: Elasticsearch at ``es_url`` (settings ``elastic``; writes that fail wait in
    ``outbox_dir``), else the embedded one in ``history_dir``.

    The generation is the one the registry gives ``model_id`` (see :meth:`Registry.generation_for`),
    unless ``generation`` names one (migrations open the generation they fill)."""
    if generation is None:
        registry = read_registry(es_url=es_url, elastic=elastic, history_dir=history_dir, outbox_dir=outbox_dir)
        generation = registry.generation_for(model_id) if registry else None
    name = generation.name if generation else ORIGINAL
    if es_url is not None:
        from search.elastic.history import ElasticHistory

        prefix = f"{elastic.index_prefix}-{name}" if name else None
        return ElasticHistory(es_url, elastic, model_id=model_id, dim=dim, outbox_dir=outbox_dir, prefix=prefix)
    from search.local.history import LocalHistory

    return LocalHistory(generation_dir(history_dir, name), model_id=model_id, dim=dim)


def generation_dir(history_dir: Path, name: str) -> Path:
    """Where an embedded history generation lives: the original in ``history_dir``, the others under it."""
    return Path(history_dir) / "generations" / name if name else Path(history_dir)


def read_registry(*, es_url: str | None, elastic: Any, history_dir: Path, outbox_dir: Path) -> Registry | None:
    """The history's generation registry, None when it has never been migrated.

    With Elasticsearch the last record read is kept in ``outbox_dir``: when the server is down, writes
    still go to the right generation's outbox, and the store itself then reports the outage.
    """
    store = history_registry(es_url=es_url, elastic=elastic, history_dir=history_dir)
    if es_url is None:
        return store.read()
    cache = Path(outbox_dir) / f"generations-{elastic.index_prefix}.json"
    try:
        registry = store.read()
    except Exception:  # unreachable or refusing: the store opened next says so in its own words
        try:
            return Registry.from_dict(json.loads(cache.read_text()))
        except (OSError, ValueError):
            return None
    finally:
        store.client.close()  # type: ignore[attr-defined]
    cache.parent.mkdir(parents=True, exist_ok=True)
    if registry is None:
        cache.unlink(missing_ok=True)
    else:
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(registry.to_dict()))
        os.replace(tmp, cache)
    return registry


def history_registry(*, es_url: str | None, elastic: Any, history_dir: Path) -> RegistryStore:
    """The generation registry kept with the history (a file beside it, or a document in Elasticsearch)."""
    if es_url is not None:
        from elasticsearch import Elasticsearch

        client = Elasticsearch(es_url, request_timeout=elastic.request_timeout_s, max_retries=2,
                               retry_on_timeout=True)
        return ElasticRegistry(client, elastic.index_prefix)
    return FileRegistry(Path(history_dir))
