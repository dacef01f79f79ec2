"""Console sign-in: an API key exchanged for a server-side session, and CSRF tokens.

The browser holds only a random session token in an ``HttpOnly``,
``SameSite=Strict`` cookie; the session (key id, scopes, CSRF token) lives in
Redis with a time limit, so signing out or revoking the key ends it
everywhere. Every state-changing request must carry the session's CSRF token
(a hidden form field, or the ``X-CSRF-Token`` header for script requests).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from ops.hooks.keys import KeyStore
from ops.hooks.redis_conn import Keys

COOKIE = "sludge_session"
TTL_S = 8 * 3600


@dataclass
class Session:
    token_hash: str
    key_id: str
    name: str
    scopes: list[str]
    csrf: str

    @property
    def reviewer(self) -> str:
        return f"console:{self.key_id}" + (f" ({self.name})" if self.name else "")

    def can(self, scope: str) -> bool:
        return scope in self.scopes

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf, presented)


class Sessions:
    def __init__(self, client, keys: Keys, key_store: KeyStore) -> None:
        self.r, self.k, self.key_store = client, keys, key_store

    def _key(self, token: str) -> str:
        return self.k("session", hashlib.sha256(token.encode()).hexdigest())

    def create(self, api_key: str) -> tuple[str, Session]:
        """Sign in: the key must be live and hold the read scope. Returns the cookie token."""
        key = self.key_store.authenticate(api_key, "read")
        token = secrets.token_urlsafe(32)
        s = Session(hashlib.sha256(token.encode()).hexdigest(), key.key_id, key.name, key.scopes,
                    secrets.token_urlsafe(32))
        self.r.set(self._key(token), json.dumps({"key_id": s.key_id, "name": s.name, "scopes": s.scopes,
                                                 "csrf": s.csrf}), ex=TTL_S)
        return token, s

    def get(self, token: str | None) -> Session | None:
        if not token or len(token) > 100:
            return None
        raw = self.r.get(self._key(token))
        if raw is None:
            return None
        d = json.loads(raw)
        key = self.key_store.get(d["key_id"])
        if key is None or key.revoked_at is not None:  # revoking the key ends its sessions
            self.r.delete(self._key(token))
            return None
        return Session(hashlib.sha256(token.encode()).hexdigest(), d["key_id"], d["name"], key.scopes, d["csrf"])

    def end(self, token: str | None) -> None:
        if token:
            self.r.delete(self._key(token))
