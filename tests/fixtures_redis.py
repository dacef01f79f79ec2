"""A real Redis 8.2 with RediSearch for the test session (``sludge services`` launcher).

Started once on a free loopback port in a temporary data directory and
stopped at the end of the session (also at interpreter exit, should pytest be
interrupted), so no server outlives the tests. Tests that need it skip with
the reason when the 'redis' extra is not installed. Each bank gets its own
index name and key prefix, so tests never see each other's data.
"""

from __future__ import annotations

import atexit
import uuid

import pytest


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    try:
        from ops.services.base import ServiceError, free_port
        from ops.services.redis import RedisService, redis_binaries

        redis_binaries()
    except (ImportError, Exception) as e:  # ServiceError: binaries missing
        pytest.skip(f"local Redis unavailable ({e}); install the 'redis' extra")
    # die_with_parent: even if pytest is killed (timeout, OOM killer), the server goes with it
    svc = RedisService(tmp_path_factory.mktemp("services"), die_with_parent=True)
    try:
        state = svc.start(free_port())
    except ServiceError as e:
        pytest.skip(f"local Redis did not start: {e}")
    atexit.register(svc.stop)
    yield state
    svc.stop()


@pytest.fixture
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture
def redis_config():
    """Settings for one test's bank: a unique alias and key prefix."""
    from search.redis.bank import RedisBankConfig

    tag = uuid.uuid4().hex[:8]
    return RedisBankConfig(index_name=f"t-{tag}", key_prefix=f"t:{tag}", socket_timeout_s=5.0, retries=2)


@pytest.fixture
def make_redis_bank(redis_url, redis_config):
    """Open (and reopen) the test's Redis bank; everything it wrote is dropped afterwards."""
    from search.redis.bank import RedisBank

    opened = []

    def make(model_id=None, dim=None, config=None):
        bank = RedisBank(redis_url, config or redis_config, model_id=model_id, dim=dim)
        opened.append(bank)
        return bank

    yield make
    if opened:
        try:
            opened[-1].drop()
        finally:
            for b in opened:
                b.close()
