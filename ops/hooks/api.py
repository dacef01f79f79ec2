"""``sludge serve``: the ingest API (FastAPI), the platform's way in.

Uploads answer 202 at once with a job id; the decision comes later from a
worker, readable at ``GET /v1/videos/{id}`` and pushed as a signed webhook.
Every ``/v1`` route needs an API key with a scope (``ingest``, ``read``,
``admin``), sent as ``Authorization: Bearer sk_…`` (or ``X-API-Key``), and is
rate limited per key in Redis. Every error, FastAPI's own included, is
``{"error": {"code", "message"}}`` with the matching status code
(:mod:`ops.hooks.asgi`). The request schemas carry every constraint the
handlers enforce, so the OpenAPI document is the contract (Schemathesis
checks it in the test suite).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request

from indexer.errors import SludgeError
from ops.console.web import console_for
from ops.hooks.asgi import BodyGuard, Guard, PageHeaders, error_response, install_error_handlers
from ops.hooks.docs import install_docs
from ops.hooks.errors import HooksError
from ops.hooks.routes import bank, health, recall, videos
from ops.hooks.schemas import CONSOLE_HEADERS
from ops.hooks.service import Hooks
from ops.hooks.state import ApiState, Stores
from search.errors import NotFoundError, StoreError

log = logging.getLogger("sludge.api")

DESCRIPTION = ("Ingest, decisions, recall and exemplar-bank administration for short-video "
               "moderation. Authenticate with `Authorization: Bearer sk_…` (or `X-API-Key`); "
               "each operation names the scope its key needs (`x-required-scope`). Every error "
               "is `{\"error\": {\"code\", \"message\"}}`.")


def create_app(app_ctx, hooks: Hooks | None = None) -> FastAPI:
    """``app_ctx``: an :class:`ops.app.App` (settings, encoder, stores), shared by the routes."""
    from prometheus_client import CollectorRegistry, Histogram

    from ops.console.routes import mount_console
    from ops.hooks.metrics import SharedCollector

    settings = app_ctx.settings
    hooks = hooks or Hooks(settings)
    registry = CollectorRegistry()
    registry.register(SharedCollector(hooks.client, hooks.keys, hooks.queue, hooks.webhooks))
    http_seconds = Histogram("sludge_http_request_seconds", "API request latency (this process)",
                             ["method", "route", "status"], registry=registry)
    state = ApiState(app_ctx=app_ctx, hooks=hooks, stores=Stores(app_ctx), registry=registry)

    api = FastAPI(title="sludge", version="0.1.0", docs_url=None, redoc_url=None, description=DESCRIPTION)
    api.state.sludge = state
    install_error_handlers(api)
    install_docs(api)
    _install_domain_errors(api)
    for module in (health, videos, recall, bank):
        api.include_router(module.router)
    mount_console(api, state)

    # Outermost last: the console's headers, then the body limits on the raw request, then the guard.
    api.add_middleware(PageHeaders, prefix="/ui", headers=CONSOLE_HEADERS)
    api.add_middleware(BodyGuard, limit=settings.api.max_body_bytes, idle_s=settings.api.body_idle_timeout_s)
    api.add_middleware(Guard, api=api,
                       observe=lambda method, route, status, s: http_seconds.labels(method, route, status).observe(s))
    _document_scopes(api)
    api.router.add_event_handler("shutdown", state.close)
    return api


def _install_domain_errors(api: FastAPI) -> None:
    """The project's typed errors as HTTP statuses: not found 404, a store down 503, other bad input 422."""

    @api.exception_handler(HooksError)
    async def hooks_error(request: Request, e: HooksError):
        if (console := console_for(request)) is not None:
            return console.failure(request, e.status, str(e), code=e.code)
        return error_response(e.status, str(e), code=e.code, headers=e.headers)

    @api.exception_handler(SludgeError)
    async def sludge_error(request: Request, e: SludgeError):
        console = console_for(request)
        if isinstance(e, NotFoundError):
            status, code = 404, "not_found"
        elif isinstance(e, StoreError):
            if console is not None:
                return console.store_down(request, e)
            return error_response(503, str(e), code="store_unavailable")
        else:
            status, code = 422, "bad_input"
        if console is not None:
            return console.failure(request, status, str(e), code=code)
        return error_response(status, str(e), code=code)

    try:
        import redis

        @api.exception_handler(redis.RedisError)
        async def redis_error(request: Request, e: Exception):
            if (console := console_for(request)) is not None:
                return console.store_down(request, e)
            return error_response(503, f"Redis: {e}", code="unavailable")
    except ImportError:  # pragma: no cover - the serve extra brings redis
        pass


def _document_scopes(api: FastAPI) -> None:
    """Name each operation's scope in the OpenAPI document (``x-required-scope`` and its description)."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            doc = get_openapi(title=api.title, version=api.version, description=api.description,
                              routes=api.routes)
            for ops in doc.get("paths", {}).values():
                for op in ops.values():
                    scopes = {s for req in op.get("security", []) for v in req.values() for s in v}
                    if scopes:
                        scope = sorted(scopes)[0]
                        op["x-required-scope"] = scope
                        op["description"] = (op.get("description", "") +
                                             f"\n\nNeeds an API key with the `{scope}` scope.").strip()
            api.openapi_schema = doc
        return api.openapi_schema

    api.openapi = openapi
