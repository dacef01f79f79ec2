"""``sludge serve`` (the ingest API) and ``sludge worker`` (the processes that decide jobs)."""

from __future__ import annotations

import logging
import signal
import threading

import click

from ops.app import err_console
from ops.cli.context import get_app


def _service_logs() -> None:
    """The service's own lines at INFO on stderr (the CLI keeps library logs quiet otherwise)."""
    log = logging.getLogger("sludge")
    if not log.handlers:
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(h)
    log.setLevel(logging.INFO)
    log.propagate = False


@click.command("serve")
@click.option("--host", default=None, help="Address to listen on (default: api.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default: api.port, 8080).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
@click.pass_context
def serve_cmd(ctx: click.Context, host: str | None, port: int | None, log_level: str) -> None:
    """Run the HTTP API: POST /v1/videos, GET /v1/videos/{id}, /v1/recall, /v1/bank/…, /metrics.

    Needs SLUDGE_REDIS_URL (queue, API keys, rate limits, webhooks). The
    OpenAPI document is at /openapi.json, the interactive one at /docs.
    Decisions are made by `sludge worker` processes, started separately.
    """
    import uvicorn

    from ops.hooks.api import create_app
    from ops.hooks.service import Hooks

    app = get_app(ctx)
    hooks = Hooks(app.settings)  # fails now, with the reason, when Redis is not configured
    hooks.client.ping()
    _service_logs()
    # The encoder (recall, text exemplars) is loaded before the first request, not by it: a model load
    # takes seconds, and the first caller would wait for it.
    app.encoder  # noqa: B018
    api = create_app(app, hooks)
    host = host or app.settings.api.host
    port = port or app.settings.api.port
    err_console.print(f"serving on http://{host}:{port} (OpenAPI: /openapi.json)")
    uvicorn.run(api, host=host, port=port, log_level=log_level, access_log=log_level == "debug",
                proxy_headers=False, server_header=False)


@click.command("worker")
@click.option("--name", default=None, help="Consumer name in the group (default: host-pid). Unique per process.")
@click.option("--max-jobs", type=click.IntRange(1), default=None, help="Exit after this many jobs (tests, batch).")
@click.option("--no-webhooks", is_flag=True, help="Do not send webhooks from this process.")
@click.pass_context
def worker_cmd(ctx: click.Context, name: str | None, max_jobs: int | None, no_webhooks: bool) -> None:
    """Decide queued videos: index into the history, match the bank, (confirm), store, send webhooks.

    Run as many as you like, on any machine that reaches Redis, the history
    and the upload folder; a job left by a worker that died is taken over after
    hooks.claim_idle_s. SIGTERM finishes the current job, then exits.
    """
    from ops.hooks.service import Hooks
    from ops.hooks.worker import Worker, redis_answers, wait_for_redis
    from search.errors import StoreError

    app = get_app(ctx)
    hooks = Hooks(app.settings)
    _service_logs()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker = None
    while worker is None:  # a worker started before Redis (or during a restart) waits for it
        wait_for_redis(hooks, stop)
        if stop.is_set():
            return
        try:
            worker = Worker(app, hooks, consumer=name, send_webhooks=not no_webhooks)
        except StoreError:
            if redis_answers(hooks):
                raise  # not an outage: the bank itself refused (a model mismatch, say)
    err_console.print(f"worker {worker.consumer} ready (group {app.settings.hooks.group})")
    try:
        n = worker.run(stop, max_jobs=max_jobs)
    finally:
        worker.close()
        hooks.close()
    err_console.print(f"worker {worker.consumer} stopped after {n} jobs")


COMMANDS = [serve_cmd, worker_cmd]
