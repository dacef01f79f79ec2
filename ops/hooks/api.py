"""``sludge serve``: the ingest API (FastAPI), the platform's way in.

Uploads answer 202 at once with a job id; the decision comes later from a
worker, readable at ``GET /v1/videos/{id}`` and pushed as a signed webhook.
Every ``/v1`` route needs an API key with a scope (``ingest``, ``read``,
``admin``), sent as ``Authorization: Bearer sk_…`` (or ``X-API-Key``), and is
rate limited per key in Redis. Errors are ``{"error": {"code", "message"}}``
with the matching status code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from indexer.errors import NotFoundError, QueryError, SludgeError, StoreError
from ops.hooks.errors import BadSource, HooksError, TooLarge, Unavailable
from ops.hooks.jobs import fingerprint
from ops.hooks.keys import ApiKey
from ops.hooks.service import Hooks
from ops.hooks.sources import check_path, check_url
from ops.hooks.worker import upload_dir

log = logging.getLogger("sludge.api")

SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


# -- request and response bodies (they make the OpenAPI document) ----------------------------

class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VideoByReference(Strict):
    url: str | None = Field(None, description="http(s) URL the worker fetches (public addresses only)")
    path: str | None = Field(None, description="absolute path under one of the server's ingest roots")
    source: str | None = Field(None, max_length=200, description="channel or upload source, kept with the video")
    meta: dict[str, Any] = Field(default_factory=dict, description="echoed back in the decision and webhooks")


class JobAccepted(BaseModel):
    id: str
    state: str
    status_url: str
    replayed: bool = Field(False, description="true when an earlier request with this Idempotency-Key made it")


class JobView(BaseModel):
    id: str
    state: Literal["queued", "processing", "decided", "failed"]
    source: dict[str, Any]
    created_at: float
    updated_at: float
    attempts: int
    video_id: str | None
    decision: dict[str, Any] | None = Field(None, description="decision, reason, stage, policies with their "
                                            "bank matches and scores, layout, transcript snippet, confirm votes")
    error: str | None
    meta: dict[str, Any]


class RecallRequest(Strict):
    query: str = Field(..., min_length=1)
    limit: int = Field(20, ge=1, le=500)
    min_score: float | None = Field(None, ge=-1, le=1)
    since: float | None = Field(None, description="unix time")
    until: float | None = None
    layouts: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    decisions: list[str] = Field(default_factory=list)
    transcript: str | None = Field(None, description="only videos whose transcript holds every word")


class PolicyBody(Strict):
    threshold: float = Field(..., ge=-1, le=1)
    rule: str = Field("best", description="'best' or 'k_of_n:K'… as `sludge policy add --rule`")
    description: str = ""


class TextExemplarBody(Strict):
    policy: str
    text: str = Field(..., min_length=1)
    note: str = ""
    threshold: float | None = Field(None, ge=-1, le=1, description="for a new policy (default bank.default_threshold)")


class ErrorBody(BaseModel):
    error: dict[str, str]


ERRORS = {s: {"model": ErrorBody} for s in (400, 401, 403, 404, 409, 413, 422, 429, 503)}


# -- the body size limit (before any parsing) -------------------------------------------------

class BodyLimit:
    """Pure ASGI middleware: refuse a body over ``limit`` bytes, by its header or as it streams."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _error_asgi(send, TooLarge(f"request body is {int(declared)} bytes; the limit is "
                                                    f"{self.limit} (api.max_body_bytes)"))
        seen = 0
        started = False

        async def counted():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge()
            return msg

        async def tracking_send(msg):
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, counted, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _error_asgi(send, TooLarge(f"request body is over the limit of {self.limit} bytes "
                                                 "(api.max_body_bytes)"))


class _BodyTooLarge(Exception):
    pass


async def _error_asgi(send, e: HooksError) -> None:
    body = json.dumps({"error": {"code": e.code, "message": str(e)}}).encode()
    await send({"type": "http.response.start", "status": e.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


# -- the app ------------------------------------------------------------------------------------

def create_app(app_ctx, hooks: Hooks | None = None) -> FastAPI:
    """``app_ctx``: an :class:`ops.app.App` (settings, encoder, stores), shared by the routes."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    from ops.hooks.metrics import SharedCollector

    settings = app_ctx.settings
    hooks = hooks or Hooks(settings)
    registry = CollectorRegistry()
    registry.register(SharedCollector(hooks.client, hooks.keys, hooks.queue, hooks.webhooks))
    http_seconds = Histogram("sludge_http_request_seconds", "API request latency (this process)",
                             ["method", "route", "status"], registry=registry)
    model_lock = threading.Lock()  # one encoder call at a time: torch shares its threads anyway
    stores = Stores(app_ctx)
    bank, history = stores.bank, stores.history

    api = FastAPI(title="sludge", version="0.1.0",
                  description="Ingest, decisions, recall and exemplar-bank administration for short-video "
                              "moderation. Authenticate with `Authorization: Bearer sk_…`.")
    api.add_middleware(BodyLimit, limit=settings.api.max_body_bytes)

    @api.middleware("http")
    async def timing(request: Request, call_next):
        t = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        http_seconds.labels(request.method, getattr(route, "path", "unmatched"),
                            str(response.status_code)).observe(time.perf_counter() - t)
        return response

    @api.exception_handler(HooksError)
    async def hooks_error(_request: Request, e: HooksError):
        return JSONResponse({"error": {"code": e.code, "message": str(e)}}, status_code=e.status, headers=e.headers)

    @api.exception_handler(SludgeError)
    async def sludge_error(_request: Request, e: SludgeError):
        status, code = ((404, "not_found") if isinstance(e, NotFoundError)
                        else (503, "store_unavailable") if isinstance(e, StoreError)
                        else (422, "bad_input"))
        return JSONResponse({"error": {"code": code, "message": str(e)}}, status_code=status)

    @api.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, e: RequestValidationError):
        return JSONResponse({"error": {"code": "bad_input", "message": _validation_message(e.errors())}},
                            status_code=422)

    @api.exception_handler(ValueError)
    async def value_error(_request: Request, e: ValueError):
        return JSONResponse({"error": {"code": "bad_input", "message": str(e)}}, status_code=422)

    try:
        import redis

        @api.exception_handler(redis.RedisError)
        async def redis_error(_request: Request, e: Exception):
            return JSONResponse({"error": {"code": "unavailable", "message": f"Redis: {e}"}}, status_code=503)
    except ImportError:  # pragma: no cover - the serve extra brings redis
        pass

    def require(scope: str):
        def dep(request: Request) -> ApiKey:
            auth = request.headers.get("authorization", "")
            presented = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("x-api-key")
            key = hooks.api_keys.authenticate(presented, scope)
            hooks.rate_limiter.hit(key.key_id)
            return key
        return dep

    # -- health ---------------------------------------------------------------------------

    @api.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up (liveness)."""
        return {"status": "ok"}

    @api.get("/readyz", tags=["health"], responses={503: {"model": dict}})
    def readyz():
        """Redis (queue, keys) and Elasticsearch (history), when configured, answer (readiness)."""
        checks: dict[str, str] = {}
        try:
            hooks.client.ping()
            checks["redis"] = "ok"
        except Exception as e:
            checks["redis"] = f"down: {e.__class__.__name__}: {e}"
        if settings.es_url is not None:
            checks["elasticsearch"] = _es_health(settings.es_url.get_secret_value())
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks},
                            status_code=200 if ok else 503)

    @api.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    def metrics():
        """Prometheus text format: jobs by state, stage latency, queue depth and lag, matches, webhooks."""
        try:
            data = generate_latest(registry)
        except Exception as e:  # Redis down: say so rather than serve a partial page
            raise Unavailable(f"metrics need Redis: {e}") from None
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    # -- videos -----------------------------------------------------------------------------

    @api.post("/v1/videos", status_code=202, response_model=JobAccepted, tags=["videos"],
              responses=ERRORS, openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": VideoByReference.model_json_schema()},
                  "multipart/form-data": {"schema": {
                      "type": "object", "required": ["file"],
                      "properties": {"file": {"type": "string", "format": "binary"},
                                     "source": {"type": "string"},
                                     "meta": {"type": "string", "description": "a JSON object"}}}}}}})
    async def submit(request: Request, key: ApiKey = Depends(require("ingest"))) -> JobAccepted:
        """Submit a video: a multipart upload (`file`), or JSON with `url` or `path`. Answers at once.

        Send an `Idempotency-Key` header to make retries safe: the same key and
        request give the same job; the same key with another request is a 409.
        """
        q = hooks.queue
        job_id = q.new_id()
        ctype = request.headers.get("content-type", "")
        stored = None
        if ctype.startswith("multipart/form-data"):
            source, meta, stored, digest = await _save_upload(request, job_id)
            fp = fingerprint({"upload": digest, "source": meta.get("source"), "meta": meta})
        elif ctype.startswith("application/json"):
            try:
                body = VideoByReference.model_validate_json(await request.body())
            except ValidationError as e:
                raise BadSource(f"bad JSON body: {_validation_message(e.errors())}") from None
            if (body.url is None) == (body.path is None):
                raise BadSource("give exactly one of `url` or `path` (or upload the file as multipart `file`)")
            if body.url is not None:
                check_url(body.url, settings.api.url_allow)
                source = {"kind": "url", "url": body.url}
            else:
                source = {"kind": "path", "path": str(check_path(body.path, settings.api.ingest_roots))}
            meta = {"source": body.source, **body.meta} if body.source else dict(body.meta)
            fp = fingerprint({"ref": source, "meta": meta})
        else:
            raise BadSource(f"unsupported Content-Type {ctype or '(none)'!r}: send multipart/form-data with a "
                            "`file`, or application/json with `url` or `path`")
        idem = request.headers.get("idempotency-key")
        if idem is not None:
            earlier = q.claim_idempotency(key.key_id, idem, job_id, fp)
            if earlier is not None:
                if stored is not None:
                    stored.unlink(missing_ok=True)
                job = q.get(earlier)
                return JobAccepted(id=job.job_id, state=job.state, status_url=f"/v1/videos/{job.job_id}",
                                   replayed=True)
        job = q.submit(job_id, source, key_id=key.key_id, meta=meta)
        return JobAccepted(id=job.job_id, state=job.state, status_url=f"/v1/videos/{job.job_id}")

    async def _save_upload(request: Request, job_id: str):
        from starlette.datastructures import UploadFile

        form = await request.form(max_files=1, max_fields=10)
        try:
            up = form.get("file")
            if not isinstance(up, UploadFile):
                raise BadSource("multipart body has no `file` part")
            raw_meta = form.get("meta")
            try:
                meta = json.loads(raw_meta) if isinstance(raw_meta, str) and raw_meta.strip() else {}
            except json.JSONDecodeError as e:
                raise BadSource(f"`meta` is not JSON: {e}") from None
            if not isinstance(meta, dict):
                raise BadSource("`meta` must be a JSON object")
            src = form.get("source")
            if isinstance(src, str) and src:
                meta["source"] = src[:200]
            name = (up.filename or "upload").replace("\\", "/").rsplit("/", 1)[-1][:200]
            suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
            dest = upload_dir(settings) / (job_id + (suffix if SUFFIX.match(suffix) else ".bin"))
            h = hashlib.sha256()
            with open(dest, "wb") as f:
                while chunk := await up.read(1 << 20):
                    h.update(chunk)
                    f.write(chunk)
            if dest.stat().st_size == 0:
                dest.unlink()
                raise BadSource(f"uploaded file {name!r} is empty (0 bytes)")
            return {"kind": "upload", "filename": name, "bytes": dest.stat().st_size,
                    "sha256": h.hexdigest(), "stored": str(dest)}, meta, dest, h.hexdigest()
        finally:
            await form.close()

    @api.get("/v1/videos/{job_id}", response_model=JobView, tags=["videos"], responses=ERRORS)
    def get_video(job_id: str, key: ApiKey = Depends(require("read"))) -> JobView:
        """A job's state, and once decided its decision with the evidence."""
        return JobView(**hooks.queue.get(job_id).public())

    # -- recall -----------------------------------------------------------------------------

    @api.post("/v1/recall", tags=["recall"], responses=ERRORS)
    def recall(body: RecallRequest, key: ApiKey = Depends(require("read"))) -> dict[str, Any]:
        """Text-to-frame search over every indexed upload, grouped by video (as `sludge recall`)."""
        from search.history import HistoryFilter

        if len(body.query) > settings.recall.max_query_chars:
            raise QueryError(f"the query has {len(body.query)} characters; at most "
                             f"{settings.recall.max_query_chars} are allowed")
        with model_lock:
            vec = app_ctx.encoder.embed_texts([body.query])[0]
        where = HistoryFilter(since=body.since, until=body.until, layouts=tuple(body.layouts),
                              sources=tuple(body.sources), decisions=tuple(body.decisions))
        hits = history().recall(vec, limit=body.limit, min_score=body.min_score, where=where,
                                transcript=body.transcript, frames_per_video=settings.recall.frames_per_video,
                                snippet_chars=settings.recall.snippet_chars)
        return {"query": body.query, "model_id": app_ctx.encoder.model_id,
                "random_weights": bool(getattr(app_ctx.encoder, "random_weights", False)),
                "results": [_public_hit(h.to_dict()) for h in hits]}

    # -- the bank ---------------------------------------------------------------------------

    @api.get("/v1/bank/policies", tags=["bank"], responses=ERRORS)
    def list_policies(key: ApiKey = Depends(require("read"))) -> dict[str, Any]:
        b = bank()
        counts = b.counts()
        return {"policies": [{**p.to_dict(), "exemplars": counts.get(p.name, {})} for p in b.list_policies()]}

    @api.put("/v1/bank/policies/{name}", tags=["bank"], responses=ERRORS)
    def put_policy(name: str, body: PolicyBody, key: ApiKey = Depends(require("admin"))) -> dict[str, Any]:
        """Create a policy or change its threshold, rule and description (audited under the key id)."""
        from search.types import Policy, Rule, check_policy_name

        check_policy_name(name)
        old = bank().get_policy(name)
        p = Policy(name, body.threshold, Rule.parse(body.rule), body.description,
                   created_at=old.created_at if old else None)
        return bank().put_policy(p, actor=f"api:{key.key_id}").to_dict()

    @api.get("/v1/bank/exemplars", tags=["bank"], responses=ERRORS)
    def list_exemplars(policy: str | None = None, enabled: bool | None = None, limit: int = 100,
                       key: ApiKey = Depends(require("read"))) -> dict[str, Any]:
        from search.bank import exemplar_public

        items = bank().list(policy=policy, enabled=enabled)[: max(1, min(limit, 10000))]
        return {"exemplars": [exemplar_public(e) for e in items]}

    @api.post("/v1/bank/exemplars", status_code=201, tags=["bank"], responses=ERRORS)
    def add_text_exemplar(body: TextExemplarBody, key: ApiKey = Depends(require("admin"))) -> dict[str, Any]:
        """Add a text exemplar (a description of what the policy targets), creating the policy if new."""
        from search.bank import exemplar_public
        from search.exemplars import text_exemplar
        from search.types import check_policy_name

        check_policy_name(body.policy)
        b = bank(with_encoder=True)
        actor = f"api:{key.key_id}"
        b.ensure_policy(body.policy, body.threshold if body.threshold is not None
                        else settings.bank.default_threshold, actor=actor)
        with model_lock:
            ex, vec = text_exemplar(app_ctx.encoder, body.policy, body.text, note=body.note, added_by=actor)
        res = b.add(ex, vec, actor=actor)
        return {"created": res.created, "exemplar": exemplar_public(res.exemplar)}

    @api.post("/v1/bank/exemplars/{exemplar_id}/{action}", tags=["bank"], responses=ERRORS)
    def toggle_exemplar(exemplar_id: str, action: Literal["enable", "disable"],
                        key: ApiKey = Depends(require("admin"))) -> dict[str, Any]:
        from search.bank import exemplar_public

        b = bank()
        ex = b.set_enabled(b.resolve(exemplar_id).exemplar_id, action == "enable", actor=f"api:{key.key_id}")
        return exemplar_public(ex)

    @api.delete("/v1/bank/exemplars/{exemplar_id}", tags=["bank"], responses=ERRORS)
    def remove_exemplar(exemplar_id: str, key: ApiKey = Depends(require("admin"))) -> dict[str, Any]:
        from search.bank import exemplar_public

        b = bank()
        return exemplar_public(b.remove(b.resolve(exemplar_id).exemplar_id, actor=f"api:{key.key_id}"))

    @api.get("/v1/bank/audit", tags=["bank"], responses=ERRORS)
    def audit(limit: int = 100, target: str | None = None,
              key: ApiKey = Depends(require("read"))) -> dict[str, Any]:
        return {"entries": [e.to_dict() for e in bank().audit(limit=max(1, min(limit, 10000)), target=target)]}

    from ops.console.routes import mount_console

    mount_console(api, app_ctx, hooks, stores, model_lock)

    @api.middleware("http")
    async def page_headers(request: Request, call_next):
        response = await call_next(request)
        if request.url.path.startswith("/ui"):  # the console: no framing, no third-party anything
            response.headers.setdefault("Content-Security-Policy", "default-src 'self'; img-src 'self'; "
                                        "style-src 'self' 'unsafe-inline'; script-src 'self'; "
                                        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Referrer-Policy", "no-referrer")
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    @api.on_event("shutdown")
    def _close() -> None:
        stores.close()
        hooks.close()

    return api


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


def _public_hit(d: dict[str, Any]) -> dict[str, Any]:
    d = dict(d)
    d.pop("path", None)  # server paths stay on the server
    return d


def _validation_message(errors: list[dict]) -> str:
    """pydantic's errors as one line: 'field.path: problem; …' (at most five)."""
    return "; ".join(f"{'.'.join(str(x) for x in err.get('loc', ())) or 'body'}: {err.get('msg')}"
                     for err in errors[:5])


def _es_health(url: str) -> str:
    try:
        from elasticsearch import Elasticsearch

        with Elasticsearch(url, request_timeout=3, max_retries=0) as es:
            status = es.cluster.health(timeout="2s")["status"]
        return "ok" if status in ("green", "yellow") else f"cluster status {status}"
    except Exception as e:
        return f"down: {e.__class__.__name__}: {e}"
