"""The hooks service end to end: the API on loopback, workers as processes, real Redis and Elasticsearch.

Webhooks go to a receiver on loopback that verifies every delivery with the
``standardwebhooks`` package from PyPI (not the project's signing code).
Models are the random-weight ViT-B-32 (pretrained weights cannot be fetched
here): the tests check the machinery (exactly one decision and one webhook
per video, retries, take-over), not the judgement.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("standardwebhooks")
httpx = pytest.importorskip("httpx")

from conftest import ffmpeg  # noqa: E402
from shapes import pinned  # noqa: E402
from hooks_stack import Stack, decided, flagging_stack, upload, wait_for  # noqa: E402

from ops.services.base import free_port  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_server, es_server):
    yield from flagging_stack(Stack(tmp_path_factory.mktemp("hooks"), redis_server.url, es_server.url),
                              "split-screen")


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("long") / "long.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=12", "-c:v", "libx264", "-preset",
           "veryfast", "-pix_fmt", "yuv420p", str(out))
    return out


@pytest.fixture
def worker(stack, request):
    """One worker for the test, stopped (SIGTERM: it finishes its job) afterwards."""
    p = stack.start_worker(f"w-{request.node.name[:40]}")
    yield p
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)


# -- the tests ------------------------------------------------------------------------------------

PIN_JOB = (
    '{"id": "str", "state": "str", "source": {"kind": "str", "filename": "str", "bytes": "number", '
    '"sha256": "str"}, "created_at": "number", "updated_at": "number", "attempts": "number", "video_id": '
    '"str", "decision": {"decision": "str", "reason": "str", "stage": "number", "policies": [{"policy": '
    '"str", "verdict": "str", "score": "number", "threshold": "number", "rule": "str", "frames_over": '
    '"number", "frames": "number", "matches": [{"ts": "number", "exemplar_id": "str", "kind": "str", '
    '"source": "str", "score": "number", "signal": "str"}]}], "confirm": "null", "cascade": "null", '
    '"seconds": {"decode": "number", "layout": "number", "hash": "number", "encode": "number", "pdq": '
    '"number", "thumbs": "number", "transcribe": "number", "store": "number", "match": "number", "total":'
    ' "number"}, "matched_policies": ["str"], "video_id": "str", "layout": {"layout": "str", '
    '"confidence": "number", "n_feeds": "number", "multi_feed": "bool", "regions": [["number"]], '
    '"evidence": {}}, "transcript": {"language": "null", "has_speech": "bool", "snippet": "str"}, '
    '"frames": ["number"], "duration": "number", "model_id": "str", "random_weights": "bool", "warnings":'
    ' [], "decided_at": "number"}, "error": "null", "meta": {"upload_ref": "str", "source": "str"}}'
)
PIN_WEBHOOK = (
    '{"id": "str", "type": "str", "data": {"job_id": "str", "video_id": "str", "decision": "str", '
    '"reason": "str", "stage": "number", "policies": [{"policy": "str", "verdict": "str", "score": '
    '"number", "threshold": "number"}], "layout": "str", "source": {"kind": "str", "filename": "str", '
    '"bytes": "number", "sha256": "str"}, "meta": {"upload_ref": "str", "source": "str"}}}'
)
PIN_RECALL = (
    '{"query": "str", "model_id": "str", "random_weights": "bool", "results": [{"video_id": "str", '
    '"score": "number", "timestamps": ["number"], "frame_scores": ["number"], "snippet": "str", '
    '"duration": "number", "uploaded_at": "number", "layout": "str", "source": "str"}]}'
)


def test_upload_to_decision_to_verified_webhook(stack, worker, clip_a):
    with stack.client(stack.admin) as c:
        r = upload(c, clip_a, idem="upload-1", source="channel-7", meta=json.dumps({"upload_ref": "u-1"}))
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        again = upload(c, clip_a, idem="upload-1", source="channel-7", meta=json.dumps({"upload_ref": "u-1"}))
        assert again.status_code == 202 and again.json()["id"] == job_id and again.json()["replayed"] is True
        other = upload(c, clip_a, idem="upload-1", source="another-channel")
        assert other.status_code == 409 and "Idempotency-Key" in other.json()["error"]["message"]

        job = decided(c, job_id)
        assert job["state"] == "decided", job
        d = job["decision"]
        assert d["decision"] == "flagged" and d["stage"] == 1
        assert d["matched_policies"] == ["split-screen"]
        pol = d["policies"][0]
        assert pol["verdict"] == "candidate" and pol["frames"] == 3 and pol["matches"][0]["kind"] == "text"
        assert d["layout"]["layout"] in ("single_scene", "vertical", "horizontal", "pip", "grid", "unknown")
        assert "snippet" in d["transcript"] and d["random_weights"] is True
        assert job["meta"] == {"upload_ref": "u-1", "source": "channel-7"}
        assert "stored" not in job["source"] and str(stack.tmp) not in json.dumps(job)

        msgs = wait_for(lambda: stack.receiver.for_job(job_id), 30, "the webhook")
        time.sleep(1.0)  # a second copy would arrive now
        msgs = stack.receiver.for_job(job_id)
        # The job view and the webhook body keep their shape (keys, order, types) across refactors; the
        # layout evidence is the detector's own and varies with the video.
        assert pinned({**job, "decision": {**d, "layout": {**d["layout"], "evidence": {}}}}) == PIN_JOB
        assert pinned(msgs[0]) == PIN_WEBHOOK
        assert len(msgs) == 1 and msgs[0]["type"] == "video.flagged"
        assert msgs[0]["data"]["video_id"] == job["video_id"] and msgs[0]["data"]["meta"]["upload_ref"] == "u-1"
        assert not stack.receiver.rejected

        # The frames are in the history (Elasticsearch): recall finds the video, with its decision.
        hits = c.post("/v1/recall", json={"query": "a test pattern", "limit": 5, "decisions": ["flagged"]})
        assert hits.status_code == 200, hits.text
        assert pinned(hits.json()) == PIN_RECALL
        assert job["video_id"] in [h["video_id"] for h in hits.json()["results"]]
        assert all("path" not in h for h in hits.json()["results"])

        # Path ingest from a configured root.
        inside = stack.roots / "from-root.mp4"
        inside.write_bytes(clip_a.read_bytes() + b"")  # same bytes: the history already has the video
        r = c.post("/v1/videos", json={"path": str(inside), "source": "nas"})
        assert r.status_code == 202, r.text
        assert decided(c, r.json()["id"])["decision"]["decision"] == "flagged"

        metrics = httpx.get(stack.base + "/metrics").text
        assert 'sludge_jobs_events_total{event="decided"}' in metrics
        assert 'sludge_policy_matches_total{policy="split-screen"}' in metrics
        assert 'sludge_webhook_deliveries_total{event="video.flagged",outcome="delivered"}' in metrics
        assert 'sludge_stage_seconds_count{stage="encode"}' in metrics
        assert 'sludge_stage_seconds_count{stage="upload_to_decision"}' in metrics
        assert httpx.get(stack.base + "/readyz").json() == {"status": "ready",
                                                            "checks": {"redis": "ok", "elasticsearch": "ok"}}


def test_worker_killed_mid_job_is_finished_by_another(stack, long_clip):
    """One decision and one webhook although two workers processed the job."""
    slow = stack.start_worker("w-doomed", env={"SLUDGE_HOOKS__SAMPLER": "uniform:60"})
    with stack.client(stack.admin) as c:
        job_id = upload(c, long_clip).json()["id"]
        wait_for(lambda: c.get(f"/v1/videos/{job_id}").json()["state"] == "processing", 60, "processing",
                 every=0.05)
        slow.kill()  # SIGKILL mid-job: no acknowledgement, no clean-up
        slow.wait()
        assert c.get(f"/v1/videos/{job_id}").json()["state"] == "processing"
        rescue = stack.start_worker("w-rescue")
        job = decided(c, job_id, timeout=180)
        assert job["state"] == "decided" and job["decision"]["decision"] == "flagged"
        assert job["attempts"] >= 2, "the job was taken over after the crash"
        wait_for(lambda: stack.receiver.for_job(job_id), 30, "the webhook")
        time.sleep(1.5)
        assert len(stack.receiver.for_job(job_id)) == 1
        r = stack.sludge("hooks", "deliveries", "--json")
        mine = [d for d in json.loads(r.stdout)["deliveries"] if d["subject"] == job_id]
        assert len(mine) == 1 and mine[0]["state"] == "delivered"
    rescue.send_signal(signal.SIGTERM)
    rescue.wait(timeout=60)


def test_receiver_down_then_back(stack, worker, clip_b):
    rec = stack.receiver
    rec.stop()
    with stack.client(stack.admin) as c:
        job_id = upload(c, clip_b).json()["id"]
        assert decided(c, job_id)["state"] == "decided"

        def failing():
            r = stack.sludge("hooks", "deliveries", "--json")
            return [d for d in json.loads(r.stdout)["deliveries"]
                    if d["subject"] == job_id and d["attempts"] >= 2 and d["state"] == "retrying"]
        d = wait_for(failing, 60, "failed attempts", every=0.5)[0]
        assert "ConnectError" in d["last_error"] and len(d["log"]) >= 2
        rec.start()  # back on the same port
        msgs = wait_for(lambda: rec.for_job(job_id), 60, "delivery once the receiver is back")
        assert len(msgs) == 1 and msgs[0]["type"] == "video.flagged"


def test_sweep_candidates_are_announced_once(stack, worker, clip_b):
    r = stack.sludge("hooks", "add", stack.receiver.url, "--events", "sweep.candidate")
    assert r.returncode == 0, r.stderr
    stack.receiver.secrets.append(r.stdout.strip().splitlines()[-1])
    with stack.client(stack.admin) as c:
        job = decided(c, upload(c, clip_b, idem="sweep-clip").json()["id"])
    sweep = ("sweep", "--policy", "sweep-test", "--query", "anything at all", "--min-score", "-1", "--json")
    r = stack.sludge(*sweep)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["webhooks_queued"] >= 1
    msgs = wait_for(lambda: [m for m in stack.receiver.got if m["type"] == "sweep.candidate"
                             and m["data"]["video_id"] == job["video_id"]], 30, "sweep.candidate")
    assert msgs[0]["data"]["policy"] == "sweep-test" and "path" not in msgs[0]["data"]
    again = stack.sludge(*sweep)  # the same candidates again: nothing new to announce
    assert json.loads(again.stdout)["webhooks_queued"] == 0


def test_bad_requests_get_clear_answers_and_change_nothing(stack, worker, tmp_path):
    reader = stack.key("read")
    with stack.client(None) as anon, stack.client("sk_0000_notakey") as bad, stack.client(reader) as ro, \
            stack.client(stack.admin) as c:
        r = anon.get("/v1/videos/job_x")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert bad.get("/v1/videos/job_x").status_code == 401
        r = ro.post("/v1/videos", json={"url": "https://example.com/a.mp4"})
        assert r.status_code == 403 and "ingest" in r.json()["error"]["message"]
        r = ro.post("/v1/bank/exemplars", json={"policy": "p", "text": "x"})
        assert r.status_code == 403
        assert ro.get("/v1/videos/job_doesnotexist").status_code == 404

        big = tmp_path / "big.mp4"
        big.write_bytes(os.urandom(9 * 1024 * 1024))
        r = upload(c, big)
        assert r.status_code == 413 and "limit" in r.json()["error"]["message"]

        for url, why in [("http://127.0.0.1:9/x.mp4", "loopback"), ("http://10.1.2.3/x.mp4", "private"),
                         ("http://169.254.169.254/latest/meta-data", "link-local"),
                         ("file:///etc/passwd", "scheme"), ("gopher://example.com/x", "scheme")]:
            r = c.post("/v1/videos", json={"url": url})
            assert r.status_code == 422 and why in r.json()["error"]["message"], (url, r.text)
        for p in ["/etc/passwd", str(stack.roots / ".." / ".." / "etc" / "passwd"), "relative/x.mp4"]:
            r = c.post("/v1/videos", json={"path": p})
            assert r.status_code == 422, (p, r.text)
        outside = tmp_path / "outside.mp4"
        outside.write_bytes(b"x")
        (stack.roots / "link.mp4").symlink_to(outside)
        r = c.post("/v1/videos", json={"path": str(stack.roots / "link.mp4")})
        assert r.status_code == 422 and "outside the ingest roots" in r.json()["error"]["message"]
        r = c.post("/v1/videos", json={"url": "https://example.com/a.mp4", "path": "/x"})
        assert r.status_code == 422
        r = c.post("/v1/videos", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["error"]["message"].startswith("bad JSON body: body: ")
        r = c.post("/v1/videos", json={"url": "https://example.com/a.mp4", "colour": "red"})
        assert r.status_code == 422 and "colour" in r.json()["error"]["message"]
        r = c.post("/v1/videos", content=b"hello", headers={"content-type": "text/plain"})
        assert r.status_code == 415 and "Content-Type" in r.json()["error"]["message"]
        r = c.post("/v1/recall", json={"query": ""})
        assert r.status_code == 422 and r.json()["error"]["code"] == "bad_input"

        corrupt = tmp_path / "corrupt.mp4"
        corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
        job_id = upload(c, corrupt).json()["id"]
        job = decided(c, job_id)
        assert job["state"] == "failed" and job["attempts"] == 1 and "corrupt.mp4" in job["error"]
        assert str(stack.tmp) not in job["error"]
        dead = json.loads(stack.sludge("hooks", "dead-jobs", "--json").stdout)["dead"]
        assert job_id in [d["job"] for d in dead]

        assert httpx.get(stack.base + "/healthz").status_code == 200  # the service is unaffected


def test_openapi_document_describes_the_api(stack):
    doc = httpx.get(stack.base + "/openapi.json").json()
    paths = doc["paths"]
    for p in ("/v1/videos", "/v1/videos/{job_id}", "/v1/recall", "/v1/bank/policies", "/v1/bank/exemplars",
              "/healthz", "/readyz", "/metrics"):
        assert p in paths, p
    body = paths["/v1/videos"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert "202" in paths["/v1/videos"]["post"]["responses"]
    assert "413" in paths["/v1/videos"]["post"]["responses"]


# -- parts, against the real Redis -------------------------------------------------------------

@pytest.fixture
def parts(redis_url):
    from ops.hooks.redis_conn import Keys, connect

    client = connect(redis_url)
    keys = Keys(f"parts:{uuid.uuid4().hex[:8]}")
    yield client, keys
    for k in client.scan_iter(keys("*")):
        client.delete(k)
    client.close()


def test_api_keys_are_stored_hashed_and_scoped(parts):
    from ops.hooks.errors import Forbidden, Unauthorized
    from ops.hooks.keys import KeyStore

    client, keys = parts
    store = KeyStore(client, keys)
    key, plaintext = store.create(["read"], "svc")
    assert plaintext.startswith(f"sk_{key.key_id}_")
    stored = client.hgetall(keys("key", key.key_id))
    assert plaintext not in json.dumps(stored) and len(stored["digest"]) == 64
    assert store.authenticate(plaintext, "read").key_id == key.key_id
    with pytest.raises(Forbidden):
        store.authenticate(plaintext, "admin")
    with pytest.raises(Unauthorized):
        store.authenticate(plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B"), "read")
    store.revoke(key.key_id)
    with pytest.raises(Unauthorized, match="revoked"):
        store.authenticate(plaintext, "read")


def test_rate_limit_per_key_in_redis(parts, redis_url):
    from ops.hooks.errors import RateLimited
    from ops.hooks.keys import RateLimiter

    _client, keys = parts
    limiter = RateLimiter(redis_url, "3/minute", keys)
    for _ in range(3):
        limiter.hit("k1")
    with pytest.raises(RateLimited) as e:
        limiter.hit("k1")
    assert 1 <= int(e.value.headers["Retry-After"]) <= 61
    limiter.hit("k2")  # another key has its own budget
    other_process = RateLimiter(redis_url, "3/minute", keys)  # shared through Redis, not in memory
    with pytest.raises(RateLimited):
        other_process.hit("k1")


def test_deliveries_are_created_once_and_back_off(parts):
    from ops.hooks.webhooks import Webhooks, backoff

    client, keys = parts
    wh = Webhooks(client, keys, allow_private=True, max_attempts=2, backoff_s=0.01)
    sub = wh.add(f"http://127.0.0.1:{free_port()}/nobody", ["video.flagged"])
    first = wh.emit("video.flagged", "job_1", {"x": 1})
    assert len(first) == 1
    assert wh.emit("video.flagged", "job_1", {"x": 1}) == []  # a redelivered job: no second message
    assert wh.emit("video.cleared", "job_1", {"x": 1}) == []  # not subscribed
    assert wh.dispatch_due() == 1
    d = wh.get_delivery(first[0])
    assert d["state"] == "retrying" and d["attempts"] == 1 and "ConnectError" in d["last_error"]
    time.sleep(0.05)
    wh.dispatch_due()
    assert wh.get_delivery(first[0])["state"] == "dead"
    assert [x["id"] for x in wh.deliveries(state="dead")] == first
    assert wh.redeliver(first[0])["state"] == "pending"
    assert client.zscore(keys("due"), first[0]) is not None
    wh.remove(sub.sub_id)
    review = wh.add(f"http://127.0.0.1:{free_port()}/review", ["video.review"])
    assert len(wh.emit("video.review", "job_2", {"x": 2})) == 1  # one message: the one subscriber
    assert wh.emit("video.flagged", "job_2", {"x": 2}) == []  # nobody subscribed to it any more
    wh.remove(review.sub_id)
    for attempt in range(1, 12):
        d = backoff(attempt, 2.0, 60.0)
        full = min(60.0, 2.0 * 2 ** (attempt - 1))
        assert full / 2 <= d <= full


def test_every_decision_a_worker_makes_has_its_event():
    """flagged, cleared and review (the cascade could not decide) each send one; all can be subscribed."""
    from ops.hooks.webhooks import EVENT_OF_DECISION, EVENTS, parse_events
    from indexer.decision import DECISION_OF_VERDICT

    assert set(EVENT_OF_DECISION) == set(DECISION_OF_VERDICT.values())
    assert set(EVENT_OF_DECISION.values()) <= set(EVENTS)
    assert parse_events("video.review,video.flagged") == ["video.flagged", "video.review"]


def test_subscription_to_a_private_address_is_refused_by_default(parts):
    from ops.hooks.errors import BadSource
    from ops.hooks.webhooks import Webhooks

    client, keys = parts
    with pytest.raises(BadSource, match="loopback"):
        Webhooks(client, keys).add("http://127.0.0.1:8080/x", ["video.flagged"])


def test_compose_file_defines_the_stack():
    import shutil as sh

    yaml = pytest.importorskip("yaml")
    root = Path(__file__).resolve().parents[1]
    doc = yaml.safe_load((root / "docker-compose.yml").read_text())
    services = doc["services"]
    for name in ("redis", "elasticsearch", "api", "worker"):
        assert name in services, name
    for name in ("redis", "elasticsearch", "api"):
        assert "healthcheck" in services[name], name
    assert services["redis"]["image"].startswith("redis:8")
    assert services["api"]["depends_on"]["redis"]["condition"] == "service_healthy"
    if sh.which("docker") is None or subprocess.run(["docker", "compose", "version"],
                                                    capture_output=True).returncode != 0:
        pytest.skip("the docker compose plugin is not installed here; the file was checked as YAML only")
    r = subprocess.run(["docker", "compose", "-f", str(root / "docker-compose.yml"), "config", "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
