"""The hooks service under load: uploads → workers → decisions → signed webhooks, end to end.

Starts a real Redis and Elasticsearch (``sludge services`` launchers; or
``--redis-url``/``--es-url``), the API (``sludge serve``) and ``--workers``
worker processes, and a webhook receiver on loopback that verifies every
delivery with the ``standardwebhooks`` package. Uploads ``--uploads`` short
generated clips (distinct bytes: a few lavfi sources, each copied with a
different container comment) at ``--concurrency``, each with an
Idempotency-Key, then waits for every decision.

Checks, not just timings: every job decided exactly once (no job lost,
failed or decided twice: the workers' duplicate-delivery counter), exactly
one verified webhook per job. Prints throughput and p50/p99
upload-to-decision latency (the job's ``created_at`` → the decision's
``decided_at``) for the prefilter path (bank KNN + PDQ + layout; no
transcription, no confirm model). The encoder is ViT-B-32 with random
weights (pretrained weights cannot be fetched here): the cost is the same.
Last line of output: one JSON object.

``--faults``: while the uploads are processed, a worker is killed with SIGKILL
``--worker-kills`` times (5; a supervisor starts a new one, as
``restart: always`` would) and Redis is killed with SIGKILL once and started
again a few seconds later. Workers alive at that moment must carry on by
themselves (same process, "Redis is back" in their log); every job must
still be decided exactly once (one entry in the decision feed) with exactly
one verified webhook. Redeliveries of jobs whose worker died are expected and
reported (``duplicate_deliveries``); a second decision or webhook is not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import machine_info  # noqa: E402

SLUDGE = str(Path(sys.executable).parent / "sludge")
SOURCES = ["testsrc2", "mandelbrot", "life=s=320x240:mold=10:r=25:ratio=0.1", "cellauto=s=320x240:rule=110",
           "rgbtestsrc"]


def make_clips(out: Path, n: int, seconds: float) -> list[Path]:
    base = []
    for i, src in enumerate(SOURCES):
        p = out / f"base{i}.mp4"
        spec = src if "=" in src else f"{src}=size=320x240:rate=25"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", spec, "-t", str(seconds),
                        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(p)], check=True)
        base.append(p)
    clips = []
    for j in range(n):
        p = out / f"clip{j:05d}.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(base[j % len(base)]), "-c", "copy",
                        "-metadata", f"comment=upload {j}", str(p)], check=True)
        clips.append(p)
    return clips


class Receiver:
    def __init__(self, secret_box: list[str]) -> None:
        from standardwebhooks.webhooks import Webhook

        self.got: dict[str, list[str]] = {}  # job id → webhook ids
        self.bad = 0
        lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                try:
                    payload = Webhook(secret_box[0]).verify(body, dict(self.headers.items()))
                except Exception:
                    with lock:
                        outer.bad += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                with lock:
                    outer.got.setdefault(payload["data"]["job_id"], []).append(self.headers["webhook-id"])
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


async def submit_all(base: str, key: str, clips: list[Path], concurrency: int) -> tuple[list[str], float]:
    """Upload every clip, each with its own Idempotency-Key, retrying (as a client should) while the
    service answers 503 or cannot be reached: the retry with the same key never makes a second job."""
    import httpx

    sem = asyncio.Semaphore(concurrency)
    ids: list[str] = [""] * len(clips)
    async with httpx.AsyncClient(base_url=base, timeout=120, headers={"Authorization": f"Bearer {key}"}) as c:
        async def one(i: int, p: Path) -> None:
            async with sem:
                data = p.read_bytes()
                status = "no answer"
                for attempt in range(40):
                    try:
                        r = await c.post("/v1/videos", files={"file": (p.name, data, "video/mp4")},
                                         headers={"Idempotency-Key": f"load-{p.name}"})
                        status = f"HTTP {r.status_code} {r.text[:200]}"
                        if r.status_code == 202:
                            ids[i] = r.json()["id"]
                            return
                    except httpx.HTTPError as e:
                        status = f"{e.__class__.__name__}: {e}"
                    await asyncio.sleep(min(5.0, 0.5 * (attempt + 1)))
                raise RuntimeError(f"upload {p.name}: {status}")

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i, p) for i, p in enumerate(clips)))
        return ids, time.perf_counter() - t0


class Chaos:
    """Kills workers (restarting each as a supervisor would) and Redis once, on a schedule, in a thread."""

    def __init__(self, start_worker, workers: list, redis_service, redis_port: int, *, worker_kills: int,
                 every_s: float, redis_at_s: float, redis_down_s: float, log_of) -> None:
        """``log_of(process)``: the worker's log file (where it says "Redis is back")."""
        self.start_worker, self.workers, self.log_of = start_worker, workers, log_of
        self.recovered: list = []
        self.redis, self.redis_port = redis_service, redis_port
        self.worker_kills, self.every_s = worker_kills, every_s
        self.redis_at_s, self.redis_down_s = redis_at_s, redis_down_s
        self.log: list[str] = []
        self.survivors: list = []  # workers alive across the Redis kill (must recover by themselves)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.t0 = 0.0

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.thread.start()

    def _say(self, text: str) -> None:
        line = f"[chaos +{time.monotonic() - self.t0:5.1f} s] {text}"
        self.log.append(line)
        print(line, flush=True)

    def _run(self) -> None:
        import random

        rng = random.Random(7)
        kills, redis_done = 0, self.redis is None
        while not self.stop.wait(0.5):
            now = time.monotonic() - self.t0
            if not redis_done and now >= self.redis_at_s:
                pid = self.redis.running().pid
                self.survivors = [p for p in self.workers if p.poll() is None]
                os.kill(pid, signal.SIGKILL)
                self._say(f"Redis (pid {pid}) killed with SIGKILL; {len(self.survivors)} workers alive")
                time.sleep(self.redis_down_s)
                self.redis.start(self.redis_port)
                self._say("Redis started again (AOF)")
                redis_done = True
                # Before anything else is killed: did the workers that saw Redis die carry on by themselves
                # (the same processes, no restart)?
                until = time.monotonic() + 90
                while time.monotonic() < until and len(self.recovered) < len(self.survivors):
                    self.recovered = [p for p in self.survivors if p.poll() is None
                                      and "Redis is back" in self.log_of(p).read_text()]
                    time.sleep(0.5)
                self._say(f"{len(self.recovered)}/{len(self.survivors)} workers alive at the Redis kill "
                          "carried on by themselves")
            if kills < self.worker_kills and now >= self.every_s * (kills + 1):
                alive = [p for p in self.workers if p.poll() is None]
                if alive:
                    victim = rng.choice(alive)
                    victim.kill()
                    victim.wait()
                    self.workers.remove(victim)
                    kills += 1
                    self.workers.append(self.start_worker())
                    self._say(f"worker pid {victim.pid} killed with SIGKILL ({kills}/{self.worker_kills}); "
                              "a new one started")
            if kills >= self.worker_kills and redis_done:
                # Stay alive: the Redis started here holds PR_SET_PDEATHSIG, which fires when the *thread*
                # that started it ends, not the process.
                self.stop.wait()
                return


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uploads", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each generated clip")
    ap.add_argument("--sampler", default="uniform:4")
    ap.add_argument("--worker-threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument("--redis-url", default=None)
    ap.add_argument("--es-url", default=None, help="default: start a local Elasticsearch for the run")
    ap.add_argument("--no-es", action="store_true", help="embedded history instead of Elasticsearch")
    ap.add_argument("--timeout", type=float, default=3600.0, help="give up waiting for decisions after")
    ap.add_argument("--faults", action="store_true", help="kill workers and Redis during the run (see above)")
    ap.add_argument("--worker-kills", type=int, default=5)
    ap.add_argument("--kill-every", type=float, default=15.0, help="seconds between worker kills")
    ap.add_argument("--redis-kill-at", type=float, default=40.0, help="seconds into processing")
    ap.add_argument("--redis-down", type=float, default=4.0, help="seconds Redis stays down")
    args = ap.parse_args()
    if args.faults and args.redis_url:
        ap.error("--faults kills Redis: it needs the benchmark's own Redis (leave out --redis-url)")

    import httpx

    from ops.services.base import free_port

    info = machine_info()
    info["loadavg_start"] = os.getloadavg()
    print("machine:", json.dumps(info), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="sludge-hooks-load-"))
    tmp.chmod(0o755)
    services, procs = [], []
    result: dict = {"bench": "hooks_load", "machine": info, "uploads": args.uploads,
                    "concurrency": args.concurrency, "workers": args.workers, "sampler": args.sampler,
                    "clip_seconds": args.seconds, "path": "prefilter (bank KNN + PDQ + layout; no ASR, no confirm)",
                    "faults": args.faults}
    redis_svc, redis_port = None, None
    try:
        redis_url = args.redis_url
        if redis_url is None:
            from ops.services.redis import RedisService

            svc = RedisService(tmp / "redis", die_with_parent=True)
            redis_port = free_port()
            redis_url = svc.start(redis_port).url
            services.append(svc)
            redis_svc = svc
        es_url = args.es_url
        if es_url is None and not args.no_es:
            from ops.services.elastic import ElasticService

            svc = ElasticService(tmp / "es", heap="1g")
            es_url = svc.start(free_port()).url
            services.append(svc)
        tag = uuid.uuid4().hex[:8]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUDGE_")}
        env.update({"SLUDGE_DATA_DIR": str(tmp / "data"), "SLUDGE_ENCODER__RANDOM_WEIGHTS": "true",
                    "SLUDGE_REDIS_URL": redis_url, "SLUDGE_HOOKS__KEY_PREFIX": f"load:{tag}",
                    "SLUDGE_REDIS__INDEX_NAME": f"load-{tag}", "SLUDGE_REDIS__KEY_PREFIX": f"load:{tag}:bank",
                    "SLUDGE_HOOKS__TRANSCRIBE": "false", "SLUDGE_HOOKS__SAMPLER": args.sampler,
                    "SLUDGE_HOOKS__WEBHOOK_ALLOW_PRIVATE": "true", "SLUDGE_API__RATE_LIMIT": "100000/minute",
                    "SLUDGE_ENCODER__THREADS": str(args.worker_threads), "HF_HUB_OFFLINE": "1"})
        if es_url:
            env.update({"SLUDGE_ES_URL": es_url, "SLUDGE_ELASTIC__INDEX_PREFIX": f"load-{tag}"})

        def sludge(*a: str) -> str:
            r = subprocess.run([SLUDGE, *a], env=env, capture_output=True, text=True, check=True)
            return r.stdout.strip().splitlines()[-1]

        t = time.perf_counter()
        clips = make_clips(tmp, args.uploads, args.seconds)
        print(f"generated {len(clips)} clips in {time.perf_counter() - t:.0f} s", flush=True)
        key = sludge("keys", "create", "--scopes", "ingest,read,admin", "--name", "load")
        secret_box: list[str] = []
        rec = Receiver(secret_box)
        secret_box.append(sludge("hooks", "add", rec.url, "--events", "video.flagged,video.cleared"))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        procs.append(subprocess.Popen([SLUDGE, "serve", "--port", str(port), "--log-level", "warning"], env=env,
                                      stdout=open(tmp / "api.log", "w"), stderr=subprocess.STDOUT))
        workers: list[subprocess.Popen] = []
        worker_logs: dict[int, Path] = {}

        def start_worker() -> subprocess.Popen:
            i = len(worker_logs)
            p = subprocess.Popen([SLUDGE, "worker", "--name", f"load-w{i}"], env=env,
                                 stdout=open(tmp / f"w{i}.log", "w"), stderr=subprocess.STDOUT)
            worker_logs[p.pid] = tmp / f"w{i}.log"
            procs.append(p)
            return p

        for _ in range(args.workers):
            workers.append(start_worker())
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200 and all(
                        "ready" in (tmp / f"w{i}.log").read_text() for i in range(args.workers)):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service did not start; see {tmp}/*.log")
            time.sleep(0.5)
        client = httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {key}"})
        r = client.post("/v1/bank/exemplars", json={"policy": "split-screen", "text": "two feeds stacked",
                                                    "threshold": 0.0})
        r.raise_for_status()

        chaos = None
        if args.faults:
            chaos = Chaos(start_worker, workers, redis_svc, redis_port, worker_kills=args.worker_kills,
                          every_s=args.kill_every, redis_at_s=args.redis_kill_at, redis_down_s=args.redis_down,
                          log_of=lambda p: worker_logs[p.pid])
            chaos.start()
        ids, submit_s = asyncio.run(submit_all(base, key, clips, args.concurrency))
        print(f"submitted {len(ids)} uploads in {submit_s:.1f} s", flush=True)
        jobs: dict[str, dict] = {}
        end = time.monotonic() + args.timeout
        pending = set(ids)
        while pending and time.monotonic() < end:
            for jid in list(pending):
                try:
                    j = client.get(f"/v1/videos/{jid}").json()
                except (httpx.HTTPError, ValueError):
                    continue  # Redis (and so the API) down for a moment
                if j.get("state") in ("decided", "failed"):
                    jobs[jid] = j
                    pending.discard(jid)
            if pending:
                print(f"  {len(jobs)}/{len(ids)} decided", flush=True)
                time.sleep(2.0)
        wait_hooks = time.monotonic() + 60
        while time.monotonic() < wait_hooks and sum(1 for j in ids if j in rec.got) < len(jobs):
            time.sleep(0.5)
        time.sleep(2.0)  # late duplicates would arrive now
        if chaos is not None:
            chaos.stop.set()
            chaos.thread.join(timeout=60)
            from ops.hooks.jobs import JobQueue
            from ops.hooks.redis_conn import Keys, connect

            rc = connect(redis_url)
            feed = JobQueue(rc, Keys(f"load:{tag}")).recent_decisions(len(ids) * 3 + 100)
            rc.close()
            per_job: dict[str, int] = {}
            for d in feed:
                per_job[d["job"]] = per_job.get(d["job"], 0) + 1
            recovered = chaos.recovered
            result["chaos"] = {
                "events": chaos.log,
                "workers_killed": sum("worker pid" in e for e in chaos.log),
                "redis_killed": sum("Redis (pid" in e for e in chaos.log),
                "workers_alive_at_redis_kill": len(chaos.survivors),
                "workers_recovered_by_themselves": len(recovered),
                "decisions_in_feed_per_job": {"one": sum(1 for j in ids if per_job.get(j) == 1),
                                              "none": sum(1 for j in ids if j not in per_job),
                                              "more": sum(1 for j in ids if per_job.get(j, 0) > 1)},
            }
        metrics = client.get("/metrics").text
        dup = next((float(line.split()[-1]) for line in metrics.splitlines()
                    if line.startswith('sludge_jobs_events_total{event="duplicate_deliveries"}')), 0.0)
        decided = [j for j in jobs.values() if j["state"] == "decided"]
        lat = np.array([j["decision"]["decided_at"] - j["created_at"] for j in decided])
        first = min(j["created_at"] for j in jobs.values()) if jobs else 0
        last = max((j["decision"]["decided_at"] for j in decided), default=first)
        hooks_per_job = [len(rec.got.get(j, [])) for j in ids]
        result.update({
            "submitted": len(ids), "distinct_job_ids": len(set(ids)), "decided": len(decided),
            "failed": sum(1 for j in jobs.values() if j["state"] == "failed"), "lost": len(pending),
            "duplicate_deliveries": dup,
            "flagged": sum(1 for j in decided if j["decision"]["decision"] == "flagged"),
            "webhooks_exactly_once": sum(1 for n in hooks_per_job if n == 1),
            "webhooks_missing": sum(1 for n in hooks_per_job if n == 0),
            "webhooks_duplicated": sum(1 for n in hooks_per_job if n > 1), "webhooks_unverified": rec.bad,
            "submit_seconds": round(submit_s, 2), "uploads_per_s": round(len(ids) / submit_s, 2),
            "decisions_per_s": round(len(decided) / max(1e-9, last - first), 3),
            "videos_per_min": round(60 * len(decided) / max(1e-9, last - first), 1),
            "latency_p50_s": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
            "latency_p99_s": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
            "worker_seconds_mean": {s: round(float(np.mean([j["decision"]["seconds"].get(s, 0) for j in decided])), 4)
                                    for s in ("decode", "layout", "encode", "pdq", "store", "match", "total")}
            if decided else {},
            "exactly_once": (len(decided) == len(ids) == len(set(ids)) and not pending
                             and (dup == 0 or args.faults)  # redeliveries after a kill are expected
                             and all(n == 1 for n in hooks_per_job)
                             and (not args.faults or result["chaos"]["decisions_in_feed_per_job"]["one"] == len(ids))),
        })
        if args.faults:
            c = result["chaos"]
            result["workers_recovered"] = c["workers_recovered_by_themselves"] == c["workers_alive_at_redis_kill"]
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        for s in services:
            s.stop()
        result["machine"]["loadavg_end"] = os.getloadavg()
    if args.faults and "chaos" in result:
        c = result["chaos"]
        print(f"faults: {c['workers_killed']} worker kills, {c['redis_killed']} Redis kill; "
              f"{c['workers_recovered_by_themselves']}/{c['workers_alive_at_redis_kill']} workers recovered by "
              f"themselves; decisions per job in the feed: {c['decisions_in_feed_per_job']}", flush=True)
    print(f"{result.get('decided')}/{result['uploads']} decided, exactly once: {result.get('exactly_once')}; "
          f"{result.get('videos_per_min')} videos/min; upload→decision p50 {result.get('latency_p50_s')} s, "
          f"p99 {result.get('latency_p99_s')} s", flush=True)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
