"""The API's contract against a real ``sludge serve`` (real Redis and Elasticsearch on loopback).

- Schemathesis (a third-party OpenAPI fuzzer) runs every one of its checks with a
  key of each scope, a fixed seed and a bounded budget, and must find nothing.
- Each request that once answered 500 (or the wrong 4xx, or kept a connection
  dangling) is sent again exactly as it was found, and must get a 4xx in the one
  error shape ``{"error": {"code", "message"}}``.
- FastAPI's own errors (400, 404, 405, 413, 415, 422), OPTIONS, /docs offline,
  request-body stalls and disconnects, the metrics' label bounds, and uploads
  refused without leaving a file behind.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from hooks_stack import Stack, upload, wait_for  # noqa: E402

from ops.services.base import free_port  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


@pytest.fixture(scope="module")
def api(tmp_path_factory, redis_server, es_server):
    s = Stack(tmp_path_factory.mktemp("contract"), redis_server.url, es_server.url)
    s.env.update({"SLUDGE_API__RATE_LIMIT": "1000000/minute",  # the fuzzer sends thousands of requests
                  "SLUDGE_API__BODY_IDLE_TIMEOUT_S": "2"})
    try:
        s.start_api()
        s.keys = {scope: s.key(scope) for scope in ("ingest", "read", "admin")}
        s.keys["all"] = s.key("ingest,read,admin")
        yield s
    finally:
        s.stop()


def error_shape(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert code is None or body["error"]["code"] == code, body
    return body["error"]


# -- Schemathesis -------------------------------------------------------------------------------

@pytest.mark.parametrize("scope", ["ingest", "read", "admin", "all"])
def test_schemathesis_finds_no_failure(api, scope, tmp_path):
    """Every check (status codes, schemas, content types, headers, positive and negative data, 405 with
    Allow, auth ignored, missing headers, use-after-free, resource availability), seed 20261207."""
    report = tmp_path / "junit.xml"
    r = subprocess.run(
        [SCHEMATHESIS, "--config-file", str(REPO / "tests" / "data" / "schemathesis.toml"), "run",
         f"{api.base}/openapi.json", "--checks", "all", "--seed", "20261207", "--max-examples", "25",
         "--generation-database", "none", "-H", f"Authorization: Bearer {api.keys[scope]}", "--no-color",
         "--request-timeout", "30", "--report", "junit", "--report-junit-path", str(report)],
        capture_output=True, text=True, timeout=300, env=api.env, cwd=tmp_path)  # its replay files go there
    assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-2000:]
    assert "passed" in r.stdout and "failure" not in r.stdout.lower().split("summary")[-1], r.stdout[-4000:]
    assert report.is_file()


# -- requests that once answered 500 (or a misleading status) ----------------------------------------

@pytest.mark.parametrize("raw", ['{"query":"x","since":1e308}', '{"query":"x","since":-1e308}',
                                 '{"query":"x","until":Infinity}', '{"query":"x","since":1e17}',
                                 '{"query":"x","since":NaN}', '{"query":"x","until":-Infinity}'])
def test_recall_times_out_of_range_are_422_before_any_model_call(api, raw):
    with api.client(api.keys["read"]) as c:
        err = error_shape(c.post("/v1/recall", content=raw, headers={"content-type": "application/json"}),
                          422, "bad_input")
    # Refused by the request schema (pydantic names the field), before the handler embeds the query.
    assert err["message"].startswith(("body.since", "body.until")), err


def test_recall_rejects_a_date_the_history_cannot_store(api):
    """1e17 s once reached Elasticsearch's client, failed to serialise and was reported as the server down."""
    with api.client(api.keys["read"]) as c:
        err = error_shape(c.post("/v1/recall", json={"query": "x", "since": 1e17}), 422)
        assert "unreachable" not in err["message"]


def test_deeply_nested_meta_is_422(api, clip_a):
    with api.client(api.keys["ingest"]) as c:
        deep = "[" * 100_000 + "]" * 100_000
        error_shape(upload(c, clip_a, meta=deep), 422, "bad_source")
        nested: object = 1
        for _ in range(50):
            nested = [nested]
        error_shape(upload(c, clip_a, meta=json.dumps({"a": nested})), 422, "bad_source")
        r = c.post("/v1/videos", json={"url": "https://example.com/a.mp4", "meta": {"a": nested}})
        error_shape(r, 422, "bad_source")
        assert "deep" in r.json()["error"]["message"]
        assert c.get("/healthz").status_code == 200  # and the connection is still good


def test_a_500_answers_in_the_shape_and_keeps_the_connection(api, tmp_path, clip_a):
    """An unexpected exception (injected) is a JSON 500 with a reference; the keep-alive connection survives."""
    port = free_port()
    p, log = api.spawn("api-fault", "serve", "--port", str(port), "--log-level", "warning",
                       env={"SLUDGE_FAULTS": "api.after_upload=raise"})
    try:
        wait_for(lambda: _answers(port), 60, "the second API")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body, ctype = _multipart(clip_a.read_bytes())
        conn.request("POST", "/v1/videos", body=body, headers={
            "Content-Type": ctype, "Authorization": f"Bearer {api.keys['ingest']}"})
        resp = conn.getresponse()
        data = json.loads(resp.read())
        assert resp.status == 500 and set(data["error"]) == {"code", "message"} and data["error"]["code"] == "internal"
        assert "reference" in data["error"]["message"] and (resp.getheader("connection") or "").lower() != "close"
        sock = conn.sock
        conn.request("GET", "/healthz")
        again = conn.getresponse()
        assert again.status == 200 and json.loads(again.read()) == {"status": "ok"}
        assert conn.sock is sock, "the server closed the connection after the 500"
        text = log.read_text()
        assert "InjectedFault" in text and "internal error" in text  # logged with the trace and the reference
        assert not list((api.tmp / "data" / "uploads").glob("*.mp4")), "the failed upload left a file behind"
    finally:
        p.terminate()
        p.wait(timeout=30)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _multipart(data: bytes, **fields: str) -> tuple[bytes, str]:
    boundary = "sludgeboundary7d1"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n'
                 f"Content-Type: video/mp4\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


# -- one error shape -------------------------------------------------------------------------------

def test_every_error_has_the_one_shape(api):
    with api.client(api.keys["all"]) as c, api.client(None) as anon:
        error_shape(anon.get("/no/such/page"), 404, "not_found")
        err = error_shape(anon.delete("/healthz"), 405, "method_not_allowed")
        assert "GET" in err["message"]
        r = c.post("/v1/videos", content=b"--x\r\n", headers={"content-type": "multipart/form-data"})
        error_shape(r, 400, "bad_request")  # no boundary
        many = {f"f{i}": "x" for i in range(20)}
        error_shape(c.post("/v1/videos", data=many, files={"file": ("a.mp4", b"abc")}), 400)  # too many fields
        error_shape(c.post("/v1/recall", content=b"{not json", headers={"content-type": "application/json"}),
                    422, "bad_input")
        error_shape(c.post("/v1/videos", content=b"hello", headers={"content-type": "text/plain"}), 415)
        error_shape(c.post("/v1/videos", content=b"x" * (9 * 1024 * 1024),
                           headers={"content-type": "application/octet-stream"}), 413, "too_large")
        error_shape(anon.get("/v1/videos/job_x"), 401, "unauthorized")
        error_shape(c.put("/v1/bank/policies/p", json={"threshold": False}), 422)  # no bool → number coercion
        error_shape(c.put("/v1/bank/policies/p", json={"threshold": 0.5, "rule": "k_of_n:99999999999999999999"}),
                    422)
        error_shape(c.post("/v1/bank/exemplars", json={"policy": "p", "text": "\u0000"}), 422)
        error_shape(c.put("/v1/bank/policies/p", json={"threshold": 0.5, "description": "d" * 5000}), 422)


def test_options_and_405_name_every_method_of_the_path(api):
    with api.client(None) as c:
        r = c.options("/v1/bank/exemplars")
        assert r.status_code == 204 and set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}
        r = c.request("PATCH", "/v1/bank/exemplars")
        assert r.status_code == 405 and "POST" in r.headers["allow"] and "GET" in r.headers["allow"]


@pytest.mark.parametrize("idem", ["", "k" * 256])
def test_a_malformed_idempotency_key_is_refused_as_input(api, idem):
    with api.client(api.keys["ingest"]) as c:
        r = c.post("/v1/videos", json={"url": "https://example.com/a.mp4"}, headers={"Idempotency-Key": idem})
        error_shape(r, 422, "bad_input")
        assert "Idempotency-Key" in r.json()["error"]["message"]


def test_openapi_declares_auth_scopes_and_constraints(api):
    doc = httpx.get(api.base + "/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer" and schemes["apiKey"]["name"] == "X-API-Key"
    scopes = {(path, method): op.get("x-required-scope") for path, ops in doc["paths"].items()
              for method, op in ops.items()}
    assert scopes[("/v1/videos", "post")] == "ingest" and scopes[("/v1/recall", "post")] == "read"
    assert scopes[("/v1/bank/policies/{name}", "put")] == "admin"
    assert all(v for (p, _m), v in scopes.items() if p.startswith("/v1/")), scopes
    put = doc["paths"]["/v1/bank/policies/{name}"]["put"]
    name = next(p for p in put["parameters"] if p["name"] == "name")
    assert name["schema"]["pattern"].startswith("^[A-Za-z0-9]")
    policy = doc["components"]["schemas"]["PolicyBody"]["properties"]
    assert policy["rule"]["pattern"] and policy["description"]["maxLength"] == 2000
    body = doc["paths"]["/v1/videos"]["post"]["requestBody"]["content"]
    assert "oneOf" in body["application/json"]["schema"]
    assert body["multipart/form-data"]["schema"]["additionalProperties"] is False
    idem = next(p for p in doc["paths"]["/v1/videos"]["post"]["parameters"] if p["name"] == "Idempotency-Key")
    assert idem["schema"]["maxLength"] == 255


def test_docs_work_offline(api):
    page = httpx.get(api.base + "/docs")
    assert page.status_code == 200
    assets = [a for a in ("swagger-ui-bundle.js", "swagger-ui.css") if f"/docs/assets/{a}" in page.text]
    assert len(assets) == 2, page.text
    assert "cdn" not in page.text.lower()
    for a in assets:
        r = httpx.get(f"{api.base}/docs/assets/{a}")
        assert r.status_code == 200 and len(r.content) > 10_000


# -- limits and leftovers --------------------------------------------------------------------------

def test_meta_and_source_limits_are_one_rule(api, clip_a):
    with api.client(api.keys["ingest"]) as c:
        big = json.dumps({"blob": "x" * 20_000})
        error_shape(upload(c, clip_a, meta=big), 422, "bad_source")
        error_shape(c.post("/v1/videos", json={"url": "https://example.com/a.mp4", "meta": {"blob": "x" * 20_000}}),
                    422, "bad_source")
        multipart = error_shape(upload(c, clip_a, source="s" * 201), 422, "bad_source")
        as_json = error_shape(c.post("/v1/videos", json={"url": "https://example.com/a.mp4", "source": "s" * 201}),
                              422, "bad_source")
        assert "200" in multipart["message"] and "200" in as_json["message"]


def test_refused_uploads_leave_no_file(api, clip_a, clip_b):
    uploads = api.tmp / "data" / "uploads"
    before = set(uploads.glob("*")) if uploads.is_dir() else set()
    with api.client(api.keys["ingest"]) as c:
        assert upload(c, clip_a, idem="refused-1").status_code == 202
        error_shape(upload(c, clip_b, idem="refused-1"), 409, "conflict")  # same key, another video
        error_shape(upload(c, clip_b, meta="[1, 2]"), 422)
        error_shape(upload(c, clip_b, meta="{}", colour="red"), 422)  # an unknown part
        r = upload(c, clip_a, idem="refused-1")  # the replay adds no second copy
        assert r.status_code == 202 and r.json()["replayed"] is True
    added = set(uploads.glob("*")) - before
    assert len(added) == 1, added  # only the first, accepted upload


def test_metrics_method_label_is_bounded(api):
    with api.client(None) as c:
        for m in ("FOOBAR", "BREW", "X" * 30):
            c.request(m, "/healthz")
        text = c.get("/metrics").text
    assert 'method="other"' in text
    assert "FOOBAR" not in text and "BREW" not in text


def test_a_stalled_body_is_cut_off_and_a_vanished_client_is_one_line(api):
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as s:
        s.sendall(b"POST /v1/recall HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Authorization: Bearer " + api.keys["read"].encode() + b"\r\nContent-Length: 1000\r\n\r\n{\"q")
        t = time.monotonic()
        # the headers and the body may come in two segments: read until the server closes
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        reply = b"".join(chunks).decode()
        assert time.monotonic() - t < 20
    assert reply.startswith("HTTP/1.1 408") and '"request_timeout"' in reply and "connection: close" in reply.lower()
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as s:
        s.sendall(b"POST /v1/videos HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                  b"Authorization: Bearer " + api.keys["ingest"].encode() + b"\r\nContent-Length: 100000\r\n\r\n"
                  b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\n\r\nabc")
        time.sleep(0.5)
    log = api.tmp / "api.log"
    wait_for(lambda: "client went away" in log.read_text() or "stalled" in log.read_text(), 20, "the warning")
    text = log.read_text()
    assert "Traceback" not in text.split("client went away")[-1].split("\n\n")[0]
