"""The exemplar bank on Redis with its query engine (RediSearch HNSW), via RedisVL.

Used when ``SLUDGE_REDIS_URL`` is set; see :mod:`search.redis.bank`.
"""

from search.redis.bank import RedisBank, RedisBankConfig, RedisBankSettings

__all__ = ["RedisBank", "RedisBankConfig", "RedisBankSettings"]
