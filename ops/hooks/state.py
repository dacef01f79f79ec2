"""What the API's routes share, and the dependencies that hand it to them.

One :class:`ApiState` per process, kept on ``app.state.sludge`` by
:func:`ops.hooks.api.create_app`; routes reach it through :data:`State` (a
FastAPI dependency) instead of closing over it, so each group of routes is a
plain ``APIRouter`` module (as FastAPI's "bigger applications" layout).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, SecurityScopes

from ops.hooks.keys import ApiKey
from ops.hooks.schemas import bearer, header_key
from ops.hooks.service import Hooks


class Stores:
    """The bank and history one API process opens once and shares between requests."""

    def __init__(self, app_ctx) -> None:
        self.app_ctx = app_ctx
        self._open: dict[str, Any] = {}
        self._lock = threading.Lock()

    def bank(self, with_encoder: bool = False):
        key = f"bank{with_encoder}"
        with self._lock:
            if key not in self._open:
                self._open[key] = self.app_ctx.bank(with_encoder=with_encoder)
            return self._open[key]

    def history(self):
        with self._lock:
            if "history" not in self._open:
                self._open["history"] = self.app_ctx.history()
            return self._open["history"]

    def close(self) -> None:
        for store in self._open.values():
            store.close()
        self._open.clear()


@dataclass
class ApiState:
    """``app_ctx``: an :class:`ops.app.App` (settings, encoder, stores factories)."""

    app_ctx: Any
    hooks: Hooks
    stores: Stores
    #: one encoder call at a time: torch shares its threads between calls anyway
    model_lock: threading.Lock = field(default_factory=threading.Lock)
    registry: Any = None

    @property
    def settings(self):
        return self.app_ctx.settings

    def close(self) -> None:
        self.stores.close()
        self.hooks.close()


def get_state(request: Request) -> ApiState:
    return request.app.state.sludge


State = Annotated[ApiState, Depends(get_state)]


def _authenticate(request: Request, security_scopes: SecurityScopes,
                  bearer_cred: HTTPAuthorizationCredentials | None = Security(bearer),
                  header_cred: str | None = Security(header_key)) -> ApiKey:
    hooks = get_state(request).hooks
    presented = bearer_cred.credentials if bearer_cred is not None else header_cred
    key = hooks.api_keys.authenticate(presented, security_scopes.scopes[0])
    hooks.rate_limiter.hit(key.key_id)
    return key


def require(scope: str):
    """The API key of the request, which must hold ``scope``; rate limited per key."""
    return Security(_authenticate, scopes=[scope])
