"""Which stores a configuration names, opened: the one place that maps settings to a backend class.

Redis for the bank when a Redis URL is given, Elasticsearch for the history when an Elasticsearch URL is
given, the embedded backend (SQLite + faiss) otherwise. Beside the backends so that every caller opens
them the same way; the backend settings sections are passed through as they are (duck-typed:
``search`` does not import ``ops``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from search.bank import ExemplarBank
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
                 model_id: str | None, dim: int | None) -> FrameHistory:
    """The frame history: Elasticsearch at ``es_url`` (settings ``elastic``; writes that fail wait in
    ``outbox_dir``), else the embedded one in ``history_dir``."""
    if es_url is not None:
        from search.elastic.history import ElasticHistory

        return ElasticHistory(es_url, elastic, model_id=model_id, dim=dim, outbox_dir=outbox_dir)
    from search.local.history import LocalHistory

    return LocalHistory(history_dir, model_id=model_id, dim=dim)
