"""The hooks service's shared parts, built from settings: one Redis client, one key prefix."""

from __future__ import annotations

from functools import cached_property

from indexer.errors import ConfigError
from ops.hooks.jobs import JobQueue
from ops.hooks.keys import KeyStore, RateLimiter
from ops.hooks.metrics import StageTimer
from ops.hooks.redis_conn import Keys, connect
from ops.hooks.webhooks import Webhooks


class Hooks:
    def __init__(self, settings) -> None:
        if settings.redis_url is None:
            raise ConfigError("the hooks service keeps its queue, keys and webhooks in Redis: set SLUDGE_REDIS_URL "
                              "(`sludge services start redis` prints one)")
        self.settings = settings
        self.url = settings.redis_url.get_secret_value()
        self.keys = Keys(settings.hooks.key_prefix)
        self.client = connect(self.url, timeout_s=settings.redis.socket_timeout_s)

    @cached_property
    def queue(self) -> JobQueue:
        h = self.settings.hooks
        return JobQueue(self.client, self.keys, group=h.group, max_attempts=h.max_attempts,
                        idempotency_ttl_s=self.settings.api.idempotency_ttl_s)

    @cached_property
    def webhooks(self) -> Webhooks:
        h = self.settings.hooks
        return Webhooks(self.client, self.keys, timeout_s=h.webhook_timeout_s, max_attempts=h.webhook_max_attempts,
                        backoff_s=h.webhook_backoff_s, backoff_max_s=h.webhook_backoff_max_s,
                        lease_s=h.webhook_lease_s, url_allow=self.settings.api.url_allow,
                        allow_private=h.webhook_allow_private)

    @cached_property
    def api_keys(self) -> KeyStore:
        return KeyStore(self.client, self.keys)

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        return RateLimiter(self.url, self.settings.api.rate_limit, self.keys)

    @cached_property
    def timer(self) -> StageTimer:
        return StageTimer(self.client, self.keys)

    def close(self) -> None:
        if "webhooks" in self.__dict__:
            self.webhooks.close()
        self.client.close()


def announce_candidates(settings, candidates) -> int:
    """``sweep.candidate`` webhooks for sweep candidates: once per policy and video, however often swept.

    Does nothing without Redis (no subscriptions can exist then). Returns the
    number of deliveries created; workers send them.
    """
    if settings.redis_url is None or not candidates:
        return 0
    hooks = Hooks(settings)
    try:
        made = 0
        for c in candidates:
            data = {k: v for k, v in c.to_dict().items() if k != "path"}  # server paths stay on the server
            made += len(hooks.webhooks.emit("sweep.candidate", f"{c.policy}:{c.video_id}", data))
        return made
    finally:
        hooks.close()
