"""The hooks service under faults, each at the exact moment that matters (``ops/faults.py``).

A Redis of this module's own (it is killed and restarted here), the session's
Elasticsearch, the API and workers as real processes, webhooks verified by the
``standardwebhooks`` library. For every fault: no job lost, none decided twice,
one webhook per decision, no job stuck in a state nobody will move it out of,
and workers that recover without being restarted by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("standardwebhooks")
httpx = pytest.importorskip("httpx")

from hooks_stack import Stack, decided, flagging_stack, upload, wait_for  # noqa: E402

from ops.services.base import free_port  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory):
    from ops.services.base import ServiceError
    from ops.services.redis import RedisService, redis_binaries

    try:
        redis_binaries()
    except ServiceError as e:
        pytest.skip(str(e))
    svc = RedisService(tmp_path_factory.mktemp("fault-redis"), die_with_parent=True)
    port = free_port()
    svc.start(port)
    svc.port = port
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, own_redis, es_server):
    s = Stack(tmp_path_factory.mktemp("faults"), f"redis://127.0.0.1:{own_redis.port}/0", es_server.url)
    s.env.update({"SLUDGE_FAULT_DIR": str(s.tmp), "SLUDGE_HOOKS__MAX_ATTEMPTS": "2",
                  "SLUDGE_API__RATE_LIMIT": "100000/minute",
                  # a worker's retention pass holds its lock for one interval: keep it short for every
                  # worker here, or the first one started would keep the retention test's workers out
                  "SLUDGE_RETENTION__INTERVAL_S": "1"})
    yield from flagging_stack(s, "faults")


def held(stack, point: str, timeout: float = 120) -> None:
    wait_for(lambda: (stack.tmp / f"{point}.held").exists(), timeout, f"the worker to reach {point}")


def release(stack, point: str) -> None:
    (stack.tmp / f"{point}.held").unlink()


def one_webhook(stack, job_id: str) -> dict:
    msgs = wait_for(lambda: stack.receiver.for_job(job_id), 60, f"the webhook of {job_id}")
    time.sleep(1.0)  # a second delivery would come now
    msgs = stack.receiver.for_job(job_id)
    assert len(msgs) == 1, msgs
    return msgs[0]


def stop_worker(p) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)


def test_worker_waits_out_a_redis_restart(stack, own_redis, clip_a):
    w = stack.start_worker("w-outage")
    try:
        own_redis.stop()  # SIGTERM; AOF keeps every acknowledged write
        log = stack.tmp / "w-outage.log"
        wait_for(lambda: "Redis is unreachable" in log.read_text(), 30, "the worker to notice")
        time.sleep(3)
        assert w.poll() is None, "the worker died with Redis: " + log.read_text()[-2000:]
        own_redis.start(own_redis.port)
        with stack.client(stack.admin) as c:
            job_id = wait_for(lambda: _try_upload(c, clip_a), 60, "the API to take uploads again")
            assert decided(c, job_id, timeout=180)["state"] == "decided"
        wait_for(lambda: "Redis is back" in log.read_text(), 30, "the worker to say it is back")
        one_webhook(stack, job_id)
    finally:
        stop_worker(w)


def _try_upload(c, clip):
    try:
        r = upload(c, clip)
    except httpx.HTTPError:
        return None
    return r.json()["id"] if r.status_code == 202 else None


def test_redis_killed_between_processing_and_the_decision(stack, own_redis, clip_b):
    """The worker holds after indexing and matching; Redis is killed -9 there; the decision still comes once."""
    w = stack.start_worker("w-hold", env={"SLUDGE_FAULTS": "worker.before_decide=hold"})
    rescue = None
    try:
        with stack.client(stack.admin) as c:
            job_id = upload(c, clip_b, idem="hold-1").json()["id"]
            held(stack, "worker.before_decide")
            os.kill(own_redis.running().pid, signal.SIGKILL)
            release(stack, "worker.before_decide")
            time.sleep(2)
            assert w.poll() is None, "the worker died with Redis"
            own_redis.start(own_redis.port)
            job = decided(c, job_id, timeout=180)
            assert job["state"] == "decided"
        one_webhook(stack, job_id)
        assert w.poll() is None
    finally:
        stop_worker(w)
        if rescue is not None:
            stop_worker(rescue)


def test_api_killed_after_the_upload_before_the_job(stack, clip_a):
    """A retry with the same Idempotency-Key makes the job (not a 404 for a job that never existed)."""
    port = free_port()
    doomed, log = stack.spawn("api-doomed", "serve", "--port", str(port), "--log-level", "warning",
                              env={"SLUDGE_FAULTS": "api.after_upload"})
    wait_for(lambda: _up(port), 60, "the doomed API")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                      headers={"Authorization": f"Bearer {stack.admin}"}) as c:
        with pytest.raises(httpx.HTTPError):
            upload(c, clip_a, idem="crash-1")
    doomed.wait(timeout=30)
    assert doomed.returncode == -signal.SIGKILL
    w = stack.start_worker("w-after-api-crash")
    try:
        with stack.client(stack.admin) as c:
            r = upload(c, clip_a, idem="crash-1")
            assert r.status_code == 202 and r.json()["replayed"] is False, r.text
            job = decided(c, r.json()["id"])
            assert job["state"] == "decided"
            again = upload(c, clip_a, idem="crash-1")
            assert again.json() == {**r.json(), "replayed": True, "state": "decided"}
        # A reservation an older version left without its job (the bug this replaces) is taken over.
        from ops.hooks.jobs import fingerprint
        from ops.hooks.redis_conn import connect

        digest = hashlib.sha256(clip_a.read_bytes()).hexdigest()
        fp = fingerprint({"upload": digest, "source": None, "meta": {}})
        key_id = stack.admin.split("_")[1]
        client = connect(stack.env["SLUDGE_REDIS_URL"])
        client.set(f"{stack.env['SLUDGE_HOOKS__KEY_PREFIX']}:idem:{key_id}:"
                   f"{hashlib.sha256(b'legacy-1').hexdigest()[:32]}", f"job_{'0' * 20} {fp}")
        client.close()
        with stack.client(stack.admin) as c:
            r = upload(c, clip_a, idem="legacy-1")
            assert r.status_code == 202 and r.json()["replayed"] is False, r.text
            assert r.json()["id"] != f"job_{'0' * 20}"
            assert decided(c, r.json()["id"])["state"] == "decided"
    finally:
        stop_worker(w)


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("point", ["worker.before_decide", "worker.after_decide"])
def test_worker_killed_around_the_decision(stack, clip_b, point):
    """Killed just before or just after storing the decision: one decision, state decided, one webhook."""
    doomed = stack.start_worker(f"w-kill-{point[7:]}", env={"SLUDGE_FAULTS": point})
    with stack.client(stack.admin) as c:
        job_id = upload(c, clip_b, idem=f"kill-{point}").json()["id"]
        doomed.wait(timeout=180)
        assert doomed.returncode == -signal.SIGKILL
        state = c.get(f"/v1/videos/{job_id}").json()["state"]
        # after_decide: the decision and its state were written together, so it already reads decided
        assert state == ("decided" if point == "worker.after_decide" else "processing"), state
        rescue = stack.start_worker(f"w-rescue-{point[7:]}")
        try:
            job = decided(c, job_id, timeout=180)
            assert job["state"] == "decided"
            one_webhook(stack, job_id)
            feed = [d for d in _feed(stack) if d["job"] == job_id]
            assert len(feed) == 1, feed
        finally:
            stop_worker(rescue)


def _feed(stack) -> list[dict]:
    from ops.hooks.jobs import JobQueue
    from ops.hooks.redis_conn import Keys, connect

    client = connect(stack.env["SLUDGE_REDIS_URL"])
    try:
        return JobQueue(client, Keys(stack.env["SLUDGE_HOOKS__KEY_PREFIX"])).recent_decisions(1000)
    finally:
        client.close()


def test_a_job_that_kills_every_worker_is_dead_lettered(stack, clip_a):
    """max_attempts 2: two workers die on it (as to the OOM killer); the third sets it aside with the reason."""
    with stack.client(stack.admin) as c:
        job_id = upload(c, clip_a, idem="poison-1").json()["id"]
        for i in range(2):
            w = stack.start_worker(f"w-poisoned-{i}", env={"SLUDGE_FAULTS": "worker.after_start"})
            w.wait(timeout=120)
            assert w.returncode == -signal.SIGKILL
        survivor = stack.start_worker("w-survivor")
        try:
            job = decided(c, job_id, timeout=120)
            assert job["state"] == "failed" and "delivered 2 times" in job["error"], job
            dead = json.loads(stack.sludge("hooks", "dead-jobs", "--json").stdout)["dead"]
            assert job_id in [d["job"] for d in dead]
            # and the worker goes on with other work
            other = upload(c, clip_a, idem="after-poison").json()["id"]
            assert decided(c, other)["state"] == "decided"
        finally:
            stop_worker(survivor)
        assert not stack.receiver.for_job(job_id)


def test_retention_keeps_queued_uploads_and_workers_apply_it(stack, clip_a, clip_b):
    """Retention deletes the uploads of finished jobs, never of queued ones (by hand and in the workers);
    /metrics reports it."""
    uploads = stack.tmp / "data" / "uploads"
    tiny = {"SLUDGE_RETENTION__UPLOADS_MAX_AGE_DAYS": "0.00001"}  # under a second
    with stack.client(stack.admin) as c:
        w = stack.start_worker("w-before-retention")
        try:
            done = upload(c, clip_a, idem="retention-done").json()["id"]
            assert decided(c, done)["state"] == "decided"
        finally:
            stop_worker(w)
        queued = upload(c, clip_b, idem="retention-queued").json()["id"]  # no worker now: it stays queued
        time.sleep(1.5)
        r = stack.sludge("retention", "apply", "--json", env=tiny)
        assert r.returncode == 0, r.stderr
        left = [p.name for p in uploads.iterdir()]
        assert any(n.startswith(queued) for n in left) and not any(n.startswith(done) for n in left), left
        assert json.loads(r.stdout)["kinds"][0]["skipped_in_use"] >= 1
        w = stack.start_worker("w-retention", env=tiny)
        try:
            decided(c, queued)
            wait_for(lambda: not any(p.name.startswith(queued) for p in uploads.iterdir()), 30,
                     "the worker's retention pass")  # its first pass after the job is decided
        finally:
            stop_worker(w)
        metrics = c.get("/metrics").text
    line = next(x for x in metrics.splitlines()
                if x.startswith('sludge_retention_deleted_total{kind="uploads",unit="files"}'))
    assert float(line.split()[-1]) >= 2
    assert "sludge_retention_last_run_timestamp_seconds" in metrics
