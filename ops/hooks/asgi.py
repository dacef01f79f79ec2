"""The API's outer layers: one error shape for every failure, bounded bodies, bounded metrics.

FastAPI answers its own errors (404, 405, a body that is not JSON) with
``{"detail": …}`` and an unhandled exception with a plain-text 500 after which
uvicorn drops the connection. A client of this API handles one shape,
``{"error": {"code", "message"}}``, whatever went wrong, so:

- :func:`install_error_handlers` maps every HTTP error FastAPI or Starlette
  raises to that shape, with the right ``Allow`` on 405;
- :class:`Guard`, the outermost middleware, answers ``OPTIONS``, turns an
  exception nobody handled into a 500 in the same shape (logged with a
  reference the client sees) without closing the connection, logs a client
  that goes away mid-request as one line, and records request latency with
  bounded labels (an unknown method is ``other``);
- :class:`BodyGuard` refuses a body over the size limit (by its header or as
  it streams) and cuts off a body that stalls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Iterable

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

log = logging.getLogger("sludge.api")

#: The error code for each status FastAPI or Starlette may answer on their own.
CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
         406: "not_acceptable", 408: "request_timeout", 409: "conflict", 413: "too_large",
         415: "unsupported_media_type", 422: "bad_input", 429: "rate_limited", 500: "internal",
         503: "unavailable"}
#: Methods that get their own metrics label; anything else is "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def error_response(status: int, message: str, *, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code or CODES.get(status, "error"), "message": message}},
                        status_code=status, headers=headers)


async def send_error(send, status: int, code: str, message: str, *, close: bool = False,
                     headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """An error answered straight from ASGI (outside FastAPI's handlers)."""
    body = error_body(code, message)
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    if close:
        head.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def leaf_routes(app) -> list:
    """Every route of the app, those of included routers too.

    FastAPI from 0.16x keeps an included ``APIRouter`` as one route object
    (matched as a whole); older versions copy its routes into the app's list.
    """
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - FastAPI before included routers stayed whole
        return list(app.router.routes)
    return list(iter_route_contexts(app.router.routes))


def allowed_methods(app, scope) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in leaf_routes(app):
        match, _ = route.matches({**scope, "method": "GET"})
        route_methods = getattr(route, "methods", None)
        if match != Match.NONE and route_methods:
            methods |= set(route_methods)
            if "GET" in route_methods:
                methods.add("HEAD")
    return sorted(methods | {"OPTIONS"}) if methods else []


def install_error_handlers(api: FastAPI) -> None:
    """Answer FastAPI's and Starlette's own errors in the API's shape."""

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        headers = dict(e.headers or {})
        if e.status_code == 405:
            allow = allowed_methods(request.app, request.scope)
            headers["Allow"] = ", ".join(allow)
            message = f"{request.method} is not allowed here; allowed: {', '.join(allow)}"
        elif e.status_code == 404:
            message = f"no such resource: {request.url.path} (see /openapi.json)"
        else:
            message = str(e.detail)
        return error_response(e.status_code, message, headers=headers)

    @api.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, e: RequestValidationError):
        return error_response(422, validation_message(e.errors()), code="bad_input")


def validation_message(errors: Iterable[dict]) -> str:
    """pydantic's errors as one line: 'field.path: problem; …' (at most five)."""
    errors = list(errors)
    return "; ".join(f"{'.'.join(str(x) for x in err.get('loc', ())) or 'body'}: "
                     f"{str(err.get('msg')).removeprefix('Value error, ')}" for err in errors[:5])


class Guard:
    """Outermost ASGI middleware: OPTIONS, the last-resort 500, quiet disconnects, request metrics."""

    def __init__(self, app, *, api: FastAPI, observe=None) -> None:
        """``observe(method, route, status, seconds)``: records one request (the metrics histogram)."""
        self.app, self.api, self.observe = app, api, observe

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = 500
        started = False

        async def tracking_send(msg):
            nonlocal status, started
            if msg["type"] == "http.response.start":
                started, status = True, msg["status"]
            await send(msg)

        try:
            if scope["method"] == "OPTIONS" and (allow := allowed_methods(self.api, scope)):
                await tracking_send({"type": "http.response.start", "status": 204,
                                     "headers": [(b"allow", ", ".join(allow).encode())]})
                await tracking_send({"type": "http.response.body", "body": b""})
                return
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:
            status = 499  # nginx's name for it: nobody is left to answer
            log.warning("client went away during %s %s", scope["method"], scope["path"])
        except Exception:
            ref = secrets.token_hex(6)
            log.exception("internal error %s in %s %s", ref, scope["method"], scope["path"])
            if not started:
                await send_error(tracking_send, 500, "internal",
                                 f"internal error (reference {ref}); the server log has the details")
        finally:
            if self.observe is not None:
                route = scope.get("route")
                method = scope["method"] if scope["method"] in METHODS else "other"
                self.observe(method, getattr(route, "path", "unmatched"), str(status), time.perf_counter() - t0)


class PageHeaders:
    """Headers every response under ``prefix`` carries unless it set its own.

    Pure ASGI on purpose: Starlette's ``BaseHTTPMiddleware`` runs the app in a task
    group, which wraps an exception raised while the body is read (a stall, a body
    over the limit) in an ``ExceptionGroup`` that FastAPI then answers as a 400.
    """

    def __init__(self, app, *, prefix: str, headers: dict[str, str]) -> None:
        self.app, self.prefix = app, prefix
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            return await self.app(scope, receive, send)

        async def with_headers(msg):
            if msg["type"] == "http.response.start":
                have = {k.lower() for k, _ in msg.get("headers", [])}
                msg = {**msg, "headers": [*msg.get("headers", []), *(h for h in self.headers if h[0] not in have)]}
            await send(msg)

        await self.app(scope, receive, with_headers)


class BodyTooLarge(HTTPException):
    """Raised from ``receive``: an HTTP error, so that FastAPI's body reader passes it on as it is (it turns
    any other exception met while reading a body into a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is over the limit of {limit} bytes (api.max_body_bytes)",
                         headers={"Connection": "close"})


class BodyStalled(HTTPException):
    def __init__(self, idle_s: float) -> None:
        super().__init__(408, f"the request body stalled: nothing arrived for {idle_s:g} s "
                              "(api.body_idle_timeout_s)", headers={"Connection": "close"})


class BodyGuard:
    """Refuse a body over ``limit`` bytes; cut off one that sends nothing for ``idle_s`` seconds.

    uvicorn has no body timeout of its own: a client that opens an upload and
    stops sending would hold a connection (and a worker's memory) for ever.
    """

    def __init__(self, app, *, limit: int, idle_s: float) -> None:
        self.app, self.limit, self.idle_s = app, limit, idle_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await send_error(send, 413, "too_large", f"request body is {int(declared)} bytes; the limit "
                                    f"is {self.limit} (api.max_body_bytes)", close=True)
        seen = 0
        done = False
        started = False

        async def guarded_receive():
            nonlocal seen, done
            if done:  # the body is in; what follows is a wait for the disconnect, however long
                return await receive()
            try:
                msg = await asyncio.wait_for(receive(), self.idle_s)
            except asyncio.TimeoutError:
                log.warning("request body of %s %s stalled for %g s; cut off", scope["method"], scope["path"],
                            self.idle_s)
                raise BodyStalled(self.idle_s) from None
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                done = not msg.get("more_body", False)
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            else:
                done = True
            return msg

        async def tracking_send(msg):
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, guarded_receive, tracking_send)
        except (BodyTooLarge, BodyStalled) as e:  # raised where no exception handler answers it
            if not started:
                await send_error(send, e.status_code, CODES[e.status_code], e.detail, close=True)
