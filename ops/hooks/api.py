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

import hashlib
import json
import logging
import threading
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request, Security
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, SecurityScopes
from pydantic import ValidationError

from indexer.errors import SludgeError
from ops.faults import fault_point
from ops.hooks.asgi import (
    BodyGuard,
    Guard,
    PageHeaders,
    error_response,
    install_error_handlers,
    validation_message,
)
from ops.hooks.docs import install_docs
from ops.hooks.errors import BadSource, HooksError, Unavailable, UnsupportedMediaType
from ops.hooks.jobs import fingerprint
from ops.hooks.keys import ApiKey
from ops.hooks.schemas import (
    CONSOLE_HEADERS,
    FORM_FIELDS,
    IDEMPOTENCY,
    KEYED,
    MAX_META_BYTES,
    MAX_META_DEPTH,
    MAX_SOURCE_CHARS,
    MULTIPART_SCHEMA,
    SUFFIX,
    ExemplarId,
    Health,
    JobAccepted,
    JobId,
    JobView,
    PolicyBody,
    PolicyName,
    Ready,
    RecallRequest,
    RecallView,
    TextExemplarBody,
    VideoByReference,
    bearer,
    check_meta,
    error_responses,
    header_key,
)
from ops.hooks.service import Hooks
from ops.hooks.sources import check_path, check_url
from ops.hooks.worker import upload_dir
from ops.usecases.bank import add_exemplars, exemplars_for
from ops.usecases.recall import embed_queries, recall_videos
from search.errors import NotFoundError, StoreError
from search.types import POLICY_NAME_PATTERN

log = logging.getLogger("sludge.api")

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

    api = FastAPI(title="sludge", version="0.1.0", docs_url=None, redoc_url=None,
                  description="Ingest, decisions, recall and exemplar-bank administration for short-video "
                              "moderation. Authenticate with `Authorization: Bearer sk_…` (or `X-API-Key`); "
                              "each operation names the scope its key needs (`x-required-scope`). Every error "
                              "is `{\"error\": {\"code\", \"message\"}}`.")
    install_error_handlers(api)
    install_docs(api)

    @api.exception_handler(HooksError)
    async def hooks_error(_request: Request, e: HooksError):
        return error_response(e.status, str(e), code=e.code, headers=e.headers)

    @api.exception_handler(SludgeError)
    async def sludge_error(_request: Request, e: SludgeError):
        if isinstance(e, NotFoundError):
            return error_response(404, str(e), code="not_found")
        if isinstance(e, StoreError):
            return error_response(503, str(e), code="store_unavailable")
        return error_response(422, str(e), code="bad_input")

    try:
        import redis

        @api.exception_handler(redis.RedisError)
        async def redis_error(_request: Request, e: Exception):
            return error_response(503, f"Redis: {e}", code="unavailable")
    except ImportError:  # pragma: no cover - the serve extra brings redis
        pass

    def require(scope: str):
        def dep(security_scopes: SecurityScopes,
                bearer_cred: HTTPAuthorizationCredentials | None = Security(bearer),
                header_cred: str | None = Security(header_key)) -> ApiKey:
            presented = bearer_cred.credentials if bearer_cred is not None else header_cred
            key = hooks.api_keys.authenticate(presented, scope)
            hooks.rate_limiter.hit(key.key_id)
            return key
        return Security(dep, scopes=[scope])

    # -- health ---------------------------------------------------------------------------

    @api.get("/healthz", tags=["health"], response_model=Health, responses=error_responses())
    def healthz() -> Health:
        """The process is up (liveness)."""
        return Health(status="ok")

    @api.get("/readyz", tags=["health"], response_model=Ready,
             responses={**error_responses(), 503: {"model": Ready, "description": "a dependency is down"}})
    def readyz():
        """Redis (queue, keys) and Elasticsearch (history), when configured, answer (readiness)."""
        checks: dict[str, str] = {}
        try:
            hooks.client.ping()
            checks["redis"] = "ok"
        except Exception as e:
            checks["redis"] = f"down: {e.__class__.__name__}"
        if settings.es_url is not None:
            checks["elasticsearch"] = _es_health(settings.es_url.get_secret_value())
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks},
                            status_code=200 if ok else 503)

    @api.get("/metrics", tags=["health"], response_class=PlainTextResponse,
             responses={**error_responses(503), 200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                                             "description": "Prometheus text format 0.0.4"}})
    def metrics():
        """Prometheus text format: jobs by state, stage latency, queue depth and lag, matches, webhooks."""
        try:
            data = generate_latest(registry)
        except Exception as e:  # Redis down: say so rather than serve a partial page
            raise Unavailable(f"metrics need Redis: {e.__class__.__name__}") from None
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    # -- videos -----------------------------------------------------------------------------

    @api.post("/v1/videos", status_code=202, response_model=JobAccepted, tags=["videos"],
              responses={**error_responses(*KEYED, 409, 415), 202: {"description": "queued (or replayed)", "links": {
                  "GetJob": {"operationId": "get_video_v1_videos__job_id__get",
                             "parameters": {"job_id": "$response.body#/id"},
                             "description": "the job's state and, once decided, its decision"}}}},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": VideoByReference.model_json_schema()},
                  "multipart/form-data": {"schema": MULTIPART_SCHEMA}}}})
    async def submit(request: Request, key: ApiKey = require("ingest"),
                     idem: str = IDEMPOTENCY) -> JobAccepted:
        """Submit a video: a multipart upload (`file`), or JSON with `url` or `path`. Answers at once.

        Send an `Idempotency-Key` header to make retries safe: the same key and
        request give the same job; the same key with another request is a 409.
        """
        q = hooks.queue
        job_id = q.new_id()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        stored = None
        try:
            if ctype == "multipart/form-data":
                source, meta, stored, digest = await _save_upload(request, job_id)
                fp = fingerprint({"upload": digest, "source": meta.get("source"), "meta": meta})
            elif ctype == "application/json":
                try:
                    body = VideoByReference.model_validate_json(await request.body())
                except ValidationError as e:
                    raise BadSource(f"bad JSON body: {validation_message(e.errors())}") from None
                if body.url is not None:
                    check_url(body.url, settings.api.url_allow)
                    source = {"kind": "url", "url": body.url}
                else:
                    source = {"kind": "path", "path": str(check_path(body.path, settings.api.ingest_roots))}
                meta = {"source": body.source, **body.meta} if body.source else dict(body.meta)
                fp = fingerprint({"ref": source, "meta": meta})
            else:
                raise UnsupportedMediaType(
                    f"unsupported Content-Type {ctype or '(none)'!r}: send multipart/form-data with a `file`, "
                    "or application/json with `url` or `path`")
            fault_point("api.after_upload")
            job, replayed = q.submit(job_id, source, key_id=key.key_id, meta=meta,
                                     idempotency=(idem, fp) if idem is not None else None)
        except BaseException:
            if stored is not None:  # a refused or failed upload leaves nothing behind
                stored.unlink(missing_ok=True)
            raise
        if replayed and stored is not None:
            stored.unlink(missing_ok=True)  # the earlier request's copy is the one its job reads
        return JobAccepted(id=job.job_id, state=job.state, status_url=f"/v1/videos/{job.job_id}",
                           replayed=replayed)

    async def _save_upload(request: Request, job_id: str):
        from starlette.datastructures import UploadFile

        form = await request.form(max_files=1, max_fields=len(FORM_FIELDS))
        dest = None
        try:
            unknown = sorted(set(form.keys()) - set(FORM_FIELDS))
            if unknown:
                raise BadSource(f"unknown multipart part(s) {', '.join(map(repr, unknown[:5]))}; the parts are "
                                f"{', '.join(FORM_FIELDS)}")
            up = form.get("file")
            if not isinstance(up, UploadFile):
                raise BadSource("multipart body has no `file` part (a file, with a filename)")
            meta = _form_meta(form.get("meta"))
            src = form.get("source")
            if isinstance(src, UploadFile):
                raise BadSource("`source` must be a text part, not a file")
            if src:
                if len(src) > MAX_SOURCE_CHARS:
                    raise BadSource(f"source: at most {MAX_SOURCE_CHARS} characters (got {len(src)})")
                meta["source"] = src
            name = (up.filename or "upload").replace("\\", "/").rsplit("/", 1)[-1][:200]
            suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
            dest = upload_dir(settings) / (job_id + (suffix if SUFFIX.match(suffix) else ".bin"))
            h = hashlib.sha256()
            with open(dest, "wb") as f:
                while chunk := await up.read(1 << 20):
                    h.update(chunk)
                    f.write(chunk)
            if dest.stat().st_size == 0:
                raise BadSource(f"uploaded file {name!r} is empty (0 bytes)")
            return {"kind": "upload", "filename": name, "bytes": dest.stat().st_size,
                    "sha256": h.hexdigest(), "stored": str(dest)}, meta, dest, h.hexdigest()
        except BaseException:
            if dest is not None:
                dest.unlink(missing_ok=True)
            raise
        finally:
            await form.close()

    @api.get("/v1/videos/{job_id}", response_model=JobView, tags=["videos"], responses=error_responses(*KEYED, 404))
    def get_video(job_id: JobId, key: ApiKey = require("read")) -> JobView:
        """A job's state, and once decided its decision with the evidence."""
        return JobView(**hooks.queue.get(job_id).public())

    # -- recall -----------------------------------------------------------------------------

    @api.post("/v1/recall", tags=["recall"], response_model=RecallView, responses=error_responses(*KEYED))
    def recall(body: RecallRequest, key: ApiKey = require("read")) -> RecallView:
        """Text-to-frame search over every indexed upload, grouped by video (as `sludge recall`)."""
        from search.history import HistoryFilter

        where = HistoryFilter(since=body.since, until=body.until, layouts=tuple(body.layouts),
                              sources=tuple(body.sources), decisions=tuple(body.decisions))
        vec = embed_queries(app_ctx, texts=[body.query], lock=model_lock)[0]
        hits = recall_videos(app_ctx, vec, history=history(), limit=body.limit, min_score=body.min_score,
                             where=where, transcript=body.transcript)
        return RecallView(query=body.query, model_id=app_ctx.encoder.model_id,
                          random_weights=bool(getattr(app_ctx.encoder, "random_weights", False)),
                          results=[_public_hit(h.to_dict()) for h in hits])

    # -- the bank ---------------------------------------------------------------------------

    @api.get("/v1/bank/policies", tags=["bank"], responses=error_responses(*KEYED))
    def list_policies(key: ApiKey = require("read")) -> dict[str, Any]:
        b = bank()
        counts = b.counts()
        return {"policies": [{**p.to_dict(), "exemplars": counts.get(p.name, {})} for p in b.list_policies()]}

    @api.put("/v1/bank/policies/{name}", tags=["bank"], responses=error_responses(*KEYED))
    def put_policy(name: PolicyName, body: PolicyBody, key: ApiKey = require("admin")) -> dict[str, Any]:
        """Create a policy or change its threshold, rule and description (audited under the key id)."""
        from search.types import Policy, Rule

        old = bank().get_policy(name)
        p = Policy(name, body.threshold, Rule.parse(body.rule), body.description,
                   created_at=old.created_at if old else None)
        return bank().put_policy(p, actor=f"api:{key.key_id}").to_dict()

    @api.get("/v1/bank/exemplars", tags=["bank"], responses=error_responses(*KEYED))
    def list_exemplars(policy: Annotated[str | None, Query(pattern=POLICY_NAME_PATTERN)] = None,
                       enabled: bool | None = None, limit: Annotated[int, Query(ge=1, le=10000)] = 100,
                       key: ApiKey = require("read")) -> dict[str, Any]:
        from search.bank import exemplar_public

        items = bank().list(policy=policy, enabled=enabled)[:limit]
        return {"exemplars": [exemplar_public(e) for e in items]}

    exemplar_id_of_201 = {"exemplar_id": "$response.body#/exemplar/exemplar_id"}

    @api.post("/v1/bank/exemplars", status_code=201, tags=["bank"], responses={
        **error_responses(*KEYED), 201: {"description": "added (or already there: `created` false)", "links": {
            "DisableExemplar": {"operationId": "toggle_exemplar_v1_bank_exemplars__exemplar_id___action__post",
                                "parameters": {**exemplar_id_of_201, "action": "disable"}},
            "RemoveExemplar": {"operationId": "remove_exemplar_v1_bank_exemplars__exemplar_id__delete",
                               "parameters": exemplar_id_of_201}}}})
    def add_text_exemplar(body: TextExemplarBody, key: ApiKey = require("admin")) -> dict[str, Any]:
        """Add a text exemplar (a description of what the policy targets), creating the policy if new."""
        from search.bank import exemplar_public

        b = bank(with_encoder=True)
        actor = f"api:{key.key_id}"
        # the text is checked (and embedded) before the policy is made
        items = exemplars_for(app_ctx, body.policy, text=body.text, note=body.note, added_by=actor, lock=model_lock)
        [res] = add_exemplars(app_ctx, b, items, threshold=body.threshold, actor=actor).results
        return {"created": res.created, "exemplar": exemplar_public(res.exemplar)}

    @api.post("/v1/bank/exemplars/{exemplar_id}/{action}", tags=["bank"], responses=error_responses(*KEYED, 404))
    def toggle_exemplar(exemplar_id: ExemplarId, action: Literal["enable", "disable"],
                        key: ApiKey = require("admin")) -> dict[str, Any]:
        from search.bank import exemplar_public

        b = bank()
        ex = b.set_enabled(b.resolve(exemplar_id).exemplar_id, action == "enable", actor=f"api:{key.key_id}")
        return exemplar_public(ex)

    @api.delete("/v1/bank/exemplars/{exemplar_id}", tags=["bank"], responses=error_responses(*KEYED, 404))
    def remove_exemplar(exemplar_id: ExemplarId, key: ApiKey = require("admin")) -> dict[str, Any]:
        from search.bank import exemplar_public

        b = bank()
        return exemplar_public(b.remove(b.resolve(exemplar_id).exemplar_id, actor=f"api:{key.key_id}"))

    @api.get("/v1/bank/audit", tags=["bank"], responses=error_responses(*KEYED))
    def audit(limit: Annotated[int, Query(ge=1, le=10000)] = 100,
              target: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
              key: ApiKey = require("read")) -> dict[str, Any]:
        return {"entries": [e.to_dict() for e in bank().audit(limit=limit, target=target)]}

    from ops.console.routes import mount_console

    mount_console(api, app_ctx, hooks, stores, model_lock)

    # Outermost last: the console's headers, then the body limits on the raw request, then the guard.
    api.add_middleware(PageHeaders, prefix="/ui", headers=CONSOLE_HEADERS)
    api.add_middleware(BodyGuard, limit=settings.api.max_body_bytes, idle_s=settings.api.body_idle_timeout_s)
    api.add_middleware(Guard, api=api,
                       observe=lambda method, route, status, s: http_seconds.labels(method, route, status).observe(s))
    _document_scopes(api)

    @api.on_event("shutdown")
    def _close() -> None:
        stores.close()
        hooks.close()

    return api


def _form_meta(raw: Any) -> dict[str, Any]:
    """The multipart ``meta`` part: a bounded JSON object, read without deep recursion."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if not isinstance(raw, str):
        raise BadSource("`meta` must be a text part holding a JSON object, not a file")
    if len(raw.encode()) > MAX_META_BYTES:
        raise BadSource(f"`meta` is {len(raw.encode())} bytes; at most {MAX_META_BYTES} are allowed")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise BadSource(f"`meta` is not JSON: {e}") from None
    except RecursionError:
        raise BadSource(f"`meta` is nested more than {MAX_META_DEPTH} deep") from None
    try:
        return check_meta(meta)
    except ValueError as e:
        raise BadSource(str(e)) from None


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


def _es_health(url: str) -> str:
    try:
        from elasticsearch import Elasticsearch

        with Elasticsearch(url, request_timeout=3, max_retries=0) as es:
            status = es.cluster.health(timeout="2s")["status"]
        return "ok" if status in ("green", "yellow") else f"cluster status {status}"
    except Exception as e:
        return f"down: {e.__class__.__name__}"
