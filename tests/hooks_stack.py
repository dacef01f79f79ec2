"""A hooks-service stack for tests: the API and workers as real processes, a verifying webhook receiver.

Shared by the hooks and console tests. Everything runs on loopback against the
session's real Redis and Elasticsearch, each stack under its own key prefix,
index names and data folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from ops.services.base import free_port, parent_death_signal

SLUDGE = str(Path(sys.executable).parent / "sludge")


# -- a webhook receiver that verifies with the reference library -----------------------------

class Receiver:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.secrets: list[str] = []  # one per subscription pointing here
        self.got: list[dict] = []  # verified messages: {"id", "type", "data"}
        self.rejected: list[str] = []
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        from standardwebhooks.webhooks import Webhook

        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                payload, errors = None, []
                for secret in outer.secrets:
                    try:
                        payload = Webhook(secret).verify(body, dict(self.headers.items()))
                        break
                    except Exception as e:
                        errors.append(f"{e.__class__.__name__}: {e}")
                if payload is None:
                    outer.rejected.append("; ".join(errors))
                    self.send_response(400)
                    self.end_headers()
                    return
                outer.got.append({"id": self.headers["webhook-id"], "type": payload["type"],
                                  "data": payload["data"]})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def for_job(self, job_id: str) -> list[dict]:
        return [m for m in self.got if m["data"].get("job_id") == job_id]


# -- the stack ----------------------------------------------------------------------------------

def wait_for(pred, timeout: float, what: str, every: float = 0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Stack:
    def __init__(self, tmp: Path, redis_url: str, es_url: str) -> None:
        tag = uuid.uuid4().hex[:8]
        self.tmp = tmp
        self.roots = tmp / "roots"
        self.roots.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SLUDGE_")}
        self.env.update({
            "SLUDGE_DATA_DIR": str(tmp / "data"),
            "SLUDGE_ENCODER__RANDOM_WEIGHTS": "true",
            "SLUDGE_REDIS_URL": redis_url,
            "SLUDGE_REDIS__INDEX_NAME": f"hooks-{tag}",
            "SLUDGE_REDIS__KEY_PREFIX": f"hooks:{tag}:bank",
            "SLUDGE_ES_URL": es_url,
            "SLUDGE_ELASTIC__INDEX_PREFIX": f"t-hooks-{tag}",
            "SLUDGE_HOOKS__KEY_PREFIX": f"hooks:{tag}",
            "SLUDGE_HOOKS__TRANSCRIBE": "false",
            "SLUDGE_HOOKS__CLAIM_IDLE_S": "4",
            "SLUDGE_HOOKS__WEBHOOK_BACKOFF_S": "0.5",
            "SLUDGE_HOOKS__WEBHOOK_BACKOFF_MAX_S": "2",
            "SLUDGE_HOOKS__WEBHOOK_ALLOW_PRIVATE": "true",
            "SLUDGE_API__INGEST_ROOTS": json.dumps([str(self.roots)]),
            "SLUDGE_API__MAX_BODY_BYTES": str(8 * 1024 * 1024),
            "SLUDGE_INDEX__SAMPLER": "uniform:3",
            "HF_HUB_OFFLINE": "1",
        })
        self.procs: list[subprocess.Popen] = []
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    def sludge(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([SLUDGE, *args], env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=300)

    def spawn(self, name: str, *args: str, env: dict | None = None) -> tuple[subprocess.Popen, Path]:
        log = self.tmp / f"{name}.log"
        # parent_death_signal: the API and workers go with pytest, however pytest ends
        p = subprocess.Popen([SLUDGE, *args], env={**self.env, **(env or {})}, stdout=open(log, "w"),
                             stderr=subprocess.STDOUT, preexec_fn=parent_death_signal)
        self.procs.append(p)
        return p, log

    def start_api(self) -> None:
        p, log = self.spawn("api", "serve", "--port", str(self.port), "--log-level", "warning")

        def up():
            if p.poll() is not None:
                raise AssertionError(f"the API exited: {log.read_text()}")
            try:
                return httpx.get(self.base + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(up, 60, "the API")

    def start_worker(self, name: str, env: dict | None = None) -> subprocess.Popen:
        p, log = self.spawn(name, "worker", "--name", name, env=env)

        def ready():
            # read the log before polling: a worker told to die on its first job may be ready and gone
            # between two looks, and that is a worker that started
            exited = p.poll() is not None
            text = log.read_text()
            if "ready" in text:
                return True
            if exited:
                raise AssertionError(f"worker {name} exited: {text}")
            return False
        wait_for(ready, 120, f"worker {name}")
        return p

    def key(self, scopes: str) -> str:
        r = self.sludge("keys", "create", "--scopes", scopes, "--name", f"test-{scopes}")
        assert r.returncode == 0, r.stderr
        return r.stdout.strip().splitlines()[-1]

    def client(self, key: str | None) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=30,
                            headers={"Authorization": f"Bearer {key}"} if key else {})

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def flagging_stack(s: Stack, policy: str):
    """Start ``s``'s API with an admin key, a verifying webhook receiver subscribed to flagged and cleared,
    and a policy whose threshold (-1) flags every video with a frame; stop it all afterwards."""
    s.receiver = Receiver()
    s.receiver.start()
    try:
        s.start_api()
        s.admin = s.key("ingest,read,admin")
        r = s.sludge("hooks", "add", s.receiver.url, "--events", "video.flagged,video.cleared")
        assert r.returncode == 0, r.stderr
        s.receiver.secrets.append(r.stdout.strip().splitlines()[-1])
        assert s.receiver.secrets[0].startswith("whsec_")
        with s.client(s.admin) as c:
            r = c.post("/v1/bank/exemplars", json={"policy": policy, "text": "two unrelated feeds stacked",
                                                   "threshold": -1.0})
            assert r.status_code == 201, r.text
        yield s
    finally:  # also when setting up failed: no server left behind
        s.stop()
        s.receiver.stop()


def upload(c: httpx.Client, path: Path, *, idem: str | None = None, **form) -> httpx.Response:
    headers = {"Idempotency-Key": idem} if idem else {}
    with open(path, "rb") as f:
        return c.post("/v1/videos", files={"file": (path.name, f, "video/mp4")}, data=form, headers=headers)


def decided(c: httpx.Client, job_id: str, timeout: float = 120) -> dict:
    def done():
        j = c.get(f"/v1/videos/{job_id}").json()
        return j if j["state"] in ("decided", "failed") else None
    return wait_for(done, timeout, f"job {job_id} to be decided", every=0.25)


