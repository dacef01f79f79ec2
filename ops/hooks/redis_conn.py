"""One Redis connection and key naming for the hooks service."""

from __future__ import annotations

from dataclasses import dataclass

from ops.hooks.errors import Unavailable


@dataclass(frozen=True)
class Keys:
    """Every Redis key the service uses, under one prefix (tests and tenants get their own)."""

    prefix: str

    def __call__(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @property
    def stream(self) -> str:
        return self("jobs")

    @property
    def dead(self) -> str:
        return self("jobs", "dead")


def parse_subset(text: str | list[str], allowed: tuple[str, ...], what: str) -> list[str]:
    """A non-empty comma-separated subset of ``allowed`` (scopes, events), sorted, duplicates dropped."""
    items = text.split(",") if isinstance(text, str) else text
    chosen = sorted({x.strip() for x in items if x.strip()})
    if not chosen or any(x not in allowed for x in chosen):
        raise ValueError(f"{what} must be a comma-separated subset of {', '.join(allowed)} (got {text!r})")
    return chosen


def connect(url: str, *, timeout_s: float = 5.0):
    """A client that fails in seconds, not minutes, when the server is gone."""
    import redis

    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=timeout_s,
                                  socket_connect_timeout=timeout_s, health_check_interval=30)
    return client


def redis_down(e: Exception) -> Unavailable:
    return Unavailable(f"Redis is unreachable ({e.__class__.__name__}: {e}); start it or fix SLUDGE_REDIS_URL")
