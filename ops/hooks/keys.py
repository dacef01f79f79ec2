"""API keys with scopes, stored hashed in Redis, and the per-key rate limit.

A key is ``sk_<id>_<secret>``: the id finds the record without a scan, the
secret (256 random bits) is never stored. SHA-256 is enough for a secret of
that entropy (password hashes such as bcrypt exist to slow guessing of
*low*-entropy secrets), and the digests are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field

from ops.hooks.errors import Forbidden, RateLimited, Unauthorized
from ops.hooks.redis_conn import Keys, parse_subset

SCOPES = ("ingest", "read", "admin")


@dataclass
class ApiKey:
    key_id: str
    name: str
    scopes: list[str]
    created_at: float
    revoked_at: float | None = None
    last_used_at: float | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"key_id": self.key_id, "name": self.name, "scopes": self.scopes, "created_at": self.created_at,
                "revoked_at": self.revoked_at, "last_used_at": self.last_used_at}


def parse_scopes(text: str | list[str]) -> list[str]:
    return parse_subset(text, SCOPES, "scopes")


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    def __init__(self, client, keys: Keys) -> None:
        self.r = client
        self.k = keys

    def create(self, scopes: list[str], name: str = "") -> tuple[ApiKey, str]:
        """A new key; the plaintext is returned once and never kept."""
        scopes = parse_scopes(scopes)
        key_id = secrets.token_hex(6)
        plaintext = f"sk_{key_id}_{secrets.token_urlsafe(32)}"
        now = time.time()
        self.r.hset(self.k("key", key_id), mapping={"digest": _digest(plaintext), "scopes": ",".join(scopes),
                                                    "name": name, "created_at": now})
        self.r.sadd(self.k("keys"), key_id)
        return ApiKey(key_id, name, scopes, now), plaintext

    def _load(self, key_id: str) -> ApiKey | None:
        h = self.r.hgetall(self.k("key", key_id))
        if not h:
            return None
        return ApiKey(key_id, h.get("name", ""), h["scopes"].split(","), float(h["created_at"]),
                      float(h["revoked_at"]) if h.get("revoked_at") else None,
                      float(h["last_used_at"]) if h.get("last_used_at") else None, {"digest": h["digest"]})

    def get(self, key_id: str) -> ApiKey | None:
        return self._load(key_id)

    def list(self) -> list[ApiKey]:
        out = [self._load(i) for i in sorted(self.r.smembers(self.k("keys")))]
        return sorted((k for k in out if k is not None), key=lambda k: k.created_at)

    def revoke(self, key_id: str) -> ApiKey:
        key = self._load(key_id)
        if key is None:
            raise KeyError(f"no API key with id {key_id!r} (see `sludge keys list`)")
        if key.revoked_at is None:
            key.revoked_at = time.time()
            self.r.hset(self.k("key", key_id), "revoked_at", key.revoked_at)
        return key

    def authenticate(self, presented: str | None, scope: str) -> ApiKey:
        """The key's record when ``presented`` is a live key holding ``scope``; typed errors otherwise."""
        if not presented:
            raise Unauthorized("missing API key: send 'Authorization: Bearer sk_…' (create one with `sludge keys "
                               "create`)", headers={"WWW-Authenticate": "Bearer"})
        parts = presented.split("_", 2)
        key = self._load(parts[1]) if len(parts) == 3 and parts[0] == "sk" and parts[1].isalnum() else None
        # Compare against a dummy digest when the id is unknown, so timing says nothing about which ids exist.
        stored = key.extra["digest"] if key is not None else _digest("sk_unknown_" + secrets.token_hex(8))
        if not hmac.compare_digest(stored, _digest(presented)) or key is None:
            raise Unauthorized("invalid API key", headers={"WWW-Authenticate": "Bearer"})
        if key.revoked_at is not None:
            raise Unauthorized(f"API key {key.key_id} was revoked", headers={"WWW-Authenticate": "Bearer"})
        if scope not in key.scopes:
            raise Forbidden(f"API key {key.key_id} lacks the '{scope}' scope (it has: {', '.join(key.scopes)})")
        self.r.hset(self.k("key", key.key_id), "last_used_at", time.time())
        return key


class RateLimiter:
    """Moving-window limit per key, shared by every API process through Redis (the ``limits`` library)."""

    def __init__(self, redis_url: str, rate: str, keys: Keys) -> None:
        from limits import parse
        from limits.storage import RedisStorage
        from limits.strategies import MovingWindowRateLimiter

        self.item = parse(rate)
        self.prefix = keys("rate")
        self.limiter = MovingWindowRateLimiter(RedisStorage(redis_url, key_prefix=keys("limits")))

    def hit(self, key_id: str) -> None:
        if not self.limiter.hit(self.item, self.prefix, key_id):
            reset, _remaining = self.limiter.get_window_stats(self.item, self.prefix, key_id)
            wait = max(1, int(reset - time.time()) + 1)
            raise RateLimited(f"rate limit {self.item} exceeded for key {key_id}; retry in {wait} s",
                              headers={"Retry-After": str(wait)})
