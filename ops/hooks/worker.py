"""``sludge worker``: takes jobs from the stream, decides them, stores the decision, sends webhooks.

Stateless: models are loaded once per process, everything else is in Redis,
Elasticsearch (or the embedded stores) and the shared upload folder, so
running more workers anywhere adds throughput. A job's entry is acknowledged
only after its decision is stored; a worker that dies mid-job leaves the
entry pending, and another takes it over after ``hooks.claim_idle_s``. While a
job runs, a heartbeat keeps its entry from looking idle.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from pathlib import Path
from typing import Any

from indexer.errors import MediaError, SludgeError
from ops.faults import fault_point
from ops.hooks.errors import BadSource, HooksError, TooLarge
from ops.hooks.jobs import Job, JobQueue
from ops.hooks.metrics import StageTimer
from ops.hooks.sources import check_path, fetch_url
from ops.hooks.webhooks import EVENT_OF_DECISION, Webhooks
from ops.usecases.screen import layout_of, record_evidence, screen
from search.errors import StoreError
from search.history import snippet

log = logging.getLogger("sludge.worker")

# Errors that will not go away by trying again: the input itself is bad.
PERMANENT = (MediaError, BadSource, TooLarge)


def _redis_errors() -> tuple[type[BaseException], ...]:
    try:
        import redis
    except ImportError:  # pragma: no cover - the serve extra brings redis
        return ()
    return (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


#: Redis itself unreachable or loading: wait it out (the run loop), do not fail the job.
REDIS_DOWN = _redis_errors()


def upload_dir(settings) -> Path:
    d = settings.uploads_dir
    d.mkdir(parents=True, exist_ok=True)
    return d


class Worker:
    def __init__(self, app, services, *, consumer: str | None = None, send_webhooks: bool = True) -> None:
        """``services``: an :class:`ops.hooks.service.Hooks` (queue, webhooks, stage timer)."""
        self.app = app
        self.s = app.settings
        self.queue: JobQueue = services.queue
        self.webhooks: Webhooks = services.webhooks
        self.timer: StageTimer = services.timer
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.send_webhooks = send_webhooks
        self.indexer = app.indexer(self.s.hooks.sampler, transcribe=self.s.hooks.transcribe)
        self.bank = app.bank()
        self.history = app.history()
        self.cascade = app.cascade if self.s.hooks.confirm else None
        self.processed = 0
        self._group_ready = False
        self._next_retention = 0.0

    # -- the loop -----------------------------------------------------------------------

    def run(self, stop: threading.Event, *, max_jobs: int | None = None) -> int:
        """Take jobs until ``stop`` is set. Redis going away is waited out, not fatal.

        When Redis is unreachable (restarting, failing over, a network blip) the
        loop logs it once, backs off (0.5 s doubling to 30 s, with jitter) and
        carries on when Redis answers again; a job in hand at that moment stays
        pending in the stream and is taken over (``hooks.claim_idle_s``).
        """
        idle_ms = int(self.s.hooks.claim_idle_s * 1000)
        last_claim = 0.0
        outage = _Outage(stop)
        while not stop.is_set() and (max_jobs is None or self.processed < max_jobs):
            try:
                if not self._group_ready:
                    self.queue.ensure_group()
                    self._group_ready = True
                batch: list[tuple[str, str]] = []
                if time.monotonic() - last_claim > min(5.0, self.s.hooks.claim_idle_s / 2):
                    batch = self.queue.reclaim(self.consumer, idle_ms, count=1)
                    last_claim = time.monotonic()
                if not batch:
                    batch = self.queue.read(self.consumer, count=1,
                                            block_ms=200 if self.send_webhooks else self.s.hooks.block_ms)
                for entry_id, job_id in batch:
                    self.handle(entry_id, job_id)
                    self.processed += 1
                if self.send_webhooks:
                    self.webhooks.dispatch_due()
                self._retention()
            except REDIS_DOWN as e:
                outage.wait(e)
                continue
            outage.over()
        return self.processed

    def handle(self, entry_id: str, job_id: str) -> None:
        try:
            job = self.queue.get(job_id)
        except HooksError:  # the job record is gone (expired or deleted): nothing to decide
            self.queue.ack(entry_id)
            return
        if job.decision is not None:  # a duplicate delivery: the decision exists already
            if job.state != "decided":  # left half-written by an older version: complete it
                self.queue.decide(job_id, job.decision, job.video_id or job.decision.get("video_id"))
                job = self.queue.get(job_id)
            self._emit(job, job.decision)  # idempotent: completes webhooks a crash may have left unmade
            self.queue.ack(entry_id)
            self.queue.note_duplicate()
            return
        attempt = self.queue.start(job_id, self.consumer)
        if attempt > self.queue.max_attempts:
            # Delivered this often and never finished: each worker that took it died (a crash, the OOM
            # killer). Trying again would only kill the next one.
            self.queue.fail(job_id, entry_id, f"the job was delivered {attempt - 1} times and no worker "
                            "finished it (each died while processing it: a crash or the out-of-memory killer?)",
                            permanent=True, attempts=attempt - 1)
            log.warning("job %s dead-lettered: delivered %d times, never finished", job_id, attempt - 1)
            return
        fault_point("worker.after_start")
        beat = _Heartbeat(self.queue, self.consumer, entry_id, self.s.hooks.claim_idle_s / 3)
        beat.start()
        try:
            decision, video_id, seconds = self._decide(job)
        except PERMANENT as e:
            self.queue.fail(job_id, entry_id, _public_error(job, e), permanent=True, attempts=attempt)
            log.warning("job %s failed (%s): %s", job_id, e.__class__.__name__, e)
            return
        except REDIS_DOWN:
            raise  # the queue itself is gone: the run loop waits for it; the job stays pending
        except (SludgeError, OSError, ConnectionError, TimeoutError) as e:
            final = self.queue.fail(job_id, entry_id, _public_error(job, e), permanent=False, attempts=attempt)
            log.warning("job %s attempt %d failed%s: %s", job_id, attempt, " for good" if final else "", e)
            return
        except Exception as e:  # a bug: dead-letter it with the trace rather than retry forever
            log.exception("job %s crashed", job_id)
            self.queue.fail(job_id, entry_id, f"internal error {e.__class__.__name__}: {e}", permanent=False,
                            attempts=attempt)
            return
        finally:
            beat.stop()
        fault_point("worker.before_decide")
        first = self.queue.decide(job_id, decision, video_id)
        fault_point("worker.after_decide")
        if first:
            seconds["upload_to_decision"] = time.time() - job.created_at
            self.timer.observe(seconds)
        self._emit(self.queue.get(job_id), decision)
        self.queue.ack(entry_id)

    def _retention(self) -> None:
        """Apply ``retention`` every ``retention.interval_s``: one worker of the group at a time."""
        every = self.s.retention.interval_s
        if time.monotonic() < self._next_retention:
            return
        self._next_retention = time.monotonic() + every
        r, k = self.queue.r, self.queue.k
        if not r.set(k("retention", "lock"), self.consumer, nx=True, ex=max(1, int(every))):
            return  # another worker ran it this interval
        from ops.hooks.metrics import record_retention
        from ops.retention import run_retention

        report = run_retention(self.s, job_state=lambda job_id: r.hget(k("job", job_id), "state"))
        record_retention(r, k, report)
        for kind in report.kinds:
            if kind.deleted_files or kind.errors:
                log.info("retention: %s: deleted %d (%d bytes), kept %d (%d bytes)%s", kind.kind,
                         kind.deleted_files, kind.deleted_bytes, kind.kept_files, kind.kept_bytes,
                         f"; errors: {'; '.join(kind.errors[:3])}" if kind.errors else "")

    # -- one job --------------------------------------------------------------------------

    def _source_file(self, job: Job, seconds: dict[str, float]) -> Path:
        src = job.source
        if src["kind"] == "upload":
            return Path(src["stored"])
        if src["kind"] == "path":
            return check_path(src["path"], self.s.api.ingest_roots)  # again: the file may have moved
        t = time.perf_counter()
        dest = upload_dir(self.s) / f"{job.job_id}.video"
        if not dest.exists():
            fetch_url(src["url"], dest, allow=self.s.api.url_allow, max_bytes=self.s.api.url_max_bytes,
                      timeout_s=self.s.api.url_timeout_s)
        seconds["fetch"] = time.perf_counter() - t
        return dest

    def _decide(self, job: Job) -> tuple[dict[str, Any], str, dict[str, float]]:
        seconds: dict[str, float] = {}
        t_all = time.perf_counter()
        path = self._source_file(job, seconds)
        rec = self.indexer.process(path, source=job.meta.get("source"), uploaded_at=job.created_at)
        seconds.update(rec.timings)
        t = time.perf_counter()
        self.history.add_video(rec)
        seconds["store"] = time.perf_counter() - t
        times = [f.ts for f in rec.frames]
        layout = layout_of(rec)
        sc = screen(self.bank, record_evidence(rec, str(path)), k=self.s.bank.k, cascade=self.cascade,
                    transcript=rec.transcript)
        seconds["match"] = sc.seconds.get("match", 0.0)
        if self.cascade is not None:
            seconds["confirm"] = sc.seconds.get("stage2", 0.0)
        warnings = list(rec.warnings)
        try:
            self.history.set_decision(rec.video_id, sc.decision)
        except StoreError as e:  # the decision stands; the history copy is what failed
            warnings.append(f"history did not record the decision: {e}")
        seconds["total"] = time.perf_counter() - t_all
        decision = {
            **sc.to_dict(),
            "matched_policies": sc.matched_policies,
            "video_id": rec.video_id,
            "layout": layout,
            "transcript": {"language": rec.transcript.language, "has_speech": rec.transcript.has_speech,
                           "snippet": snippet(rec.transcript.text, self.s.recall.snippet_chars)},
            "frames": times,
            "duration": rec.duration,
            "model_id": rec.model_id,
            "random_weights": bool(getattr(self.app.encoder, "random_weights", False)),
            "warnings": warnings,
            "decided_at": time.time(),
            "seconds": {k: round(v, 4) for k, v in seconds.items()},
        }
        return decision, rec.video_id, seconds

    def _emit(self, job: Job, decision: dict[str, Any]) -> None:
        event = EVENT_OF_DECISION.get(decision["decision"])
        if event is None:
            return
        self.webhooks.emit(event, job.job_id, {
            "job_id": job.job_id, "video_id": job.video_id or decision.get("video_id"),
            "decision": decision["decision"], "reason": decision["reason"], "stage": decision["stage"],
            "policies": [{k: p.get(k) for k in ("policy", "verdict", "score", "threshold")}
                         for p in decision["policies"]],
            "layout": (decision.get("layout") or {}).get("layout"),
            "source": {k: v for k, v in job.source.items() if k != "stored"},
            "meta": job.meta,
        })

    def close(self) -> None:
        self.webhooks.close()


def _public_error(job: Job, e: Exception) -> str:
    """The error as the API shows it: the upload's own name, not where the server keeps it."""
    msg = f"{e.__class__.__name__}: {e}"
    stored = job.source.get("stored")
    if stored:
        msg = msg.replace(stored, job.source.get("filename") or "upload")
        msg = msg.replace(str(Path(stored).parent), "uploads")
    return msg


def redis_answers(services) -> bool:
    try:
        return bool(services.client.ping())
    except REDIS_DOWN:
        return False


def wait_for_redis(services, stop: threading.Event) -> None:
    """Block until Redis answers (or ``stop`` is set), logging once and backing off meanwhile."""
    outage = _Outage(stop)
    while not stop.is_set():
        try:
            services.client.ping()
        except REDIS_DOWN as e:
            outage.wait(e)
            continue
        outage.over()
        return


class _Outage:
    """Backoff while Redis is unreachable: one log line when it starts, one when it ends."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.failures = 0
        self.since = 0.0

    def wait(self, e: Exception) -> None:
        if self.failures == 0:
            self.since = time.monotonic()
            log.warning("Redis is unreachable (%s: %s); waiting for it to come back", e.__class__.__name__, e)
        self.failures += 1
        delay = min(30.0, 0.5 * 2 ** min(self.failures - 1, 6)) * random.uniform(0.5, 1.0)
        if self.failures % 10 == 0:
            log.warning("Redis still unreachable after %.0f s (%s); retrying every %.0f s or so",
                        time.monotonic() - self.since, e.__class__.__name__, delay)
        self.stop.wait(delay)

    def over(self) -> None:
        if self.failures:
            log.warning("Redis is back after %.1f s; carrying on", time.monotonic() - self.since)
            self.failures = 0


class _Heartbeat:
    """Keeps a long job's stream entry from looking abandoned while this worker is alive."""

    def __init__(self, queue: JobQueue, consumer: str, entry_id: str, every_s: float) -> None:
        self.queue, self.consumer, self.entry_id, self.every_s = queue, consumer, entry_id, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.queue.touch(self.consumer, self.entry_id)
            except Exception as e:  # Redis blips must not kill the job; the entry may then be reclaimed
                log.warning("heartbeat for %s failed: %s", self.entry_id, e)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
