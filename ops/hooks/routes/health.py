"""Liveness, readiness and Prometheus metrics: the routes an orchestrator and a scraper call, without a key."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ops.hooks.errors import Unavailable
from ops.hooks.schemas import Health, Ready, error_responses
from ops.hooks.state import State

router = APIRouter()


@router.get("/healthz", tags=["health"], response_model=Health, responses=error_responses())
def healthz() -> Health:
    """The process is up (liveness)."""
    return Health(status="ok")


@router.get("/readyz", tags=["health"], response_model=Ready,
            responses={**error_responses(), 503: {"model": Ready, "description": "a dependency is down"}})
def readyz(st: State):
    """Redis (queue, keys) and Elasticsearch (history), when configured, answer (readiness)."""
    checks: dict[str, str] = {}
    try:
        st.hooks.client.ping()
        checks["redis"] = "ok"
    except Exception as e:
        checks["redis"] = f"down: {e.__class__.__name__}"
    if st.settings.es_url is not None:
        checks["elasticsearch"] = _es_health(st.settings.es_url.get_secret_value())
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks},
                        status_code=200 if ok else 503)


@router.get("/metrics", tags=["health"], response_class=PlainTextResponse,
            responses={**error_responses(503), 200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                                                    "description": "Prometheus text format 0.0.4"}})
def metrics(st: State):
    """Prometheus text format: jobs by state, stage latency, queue depth and lag, matches, webhooks."""
    from prometheus_client import generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    try:
        data = generate_latest(st.registry)
    except Exception as e:  # Redis down: say so rather than serve a partial page
        raise Unavailable(f"metrics need Redis: {e.__class__.__name__}") from None
    return Response(data, media_type=CONTENT_TYPE_LATEST)


def _es_health(url: str) -> str:
    try:
        from elasticsearch import Elasticsearch

        with Elasticsearch(url, request_timeout=3, max_retries=0) as es:
            status = es.cluster.health(timeout="2s")["status"]
        return "ok" if status in ("green", "yellow") else f"cluster status {status}"
    except Exception as e:
        return f"down: {e.__class__.__name__}"
