"""Prometheus metrics for a service whose work is spread over many processes and machines.

The API serves ``/metrics``; the work happens in workers elsewhere. So the
workers write their observations (stage latencies as histogram buckets, job
and webhook counters) to Redis, and a collector in the API turns the shared
totals into Prometheus families at scrape time, together with the queue's
live depth and lag. The API's own request latencies are ordinary in-process
prometheus-client metrics.
"""

from __future__ import annotations

import bisect

from ops.hooks.redis_conn import Keys

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
STAGES = ("fetch", "decode", "layout", "hash", "encode", "pdq", "transcribe", "store", "match", "confirm",
          "total", "upload_to_decision")


class StageTimer:
    """Worker side: add a job's stage seconds to the shared histograms, in one round trip."""

    def __init__(self, client, keys: Keys) -> None:
        self.r = client
        self.k = keys

    def observe(self, seconds: dict[str, float]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for stage, s in seconds.items():
            key = self.k("stats", "stage", stage)
            i = bisect.bisect_left(BUCKETS, s)
            pipe.hincrby(key, BUCKETS[i] if i < len(BUCKETS) else "+Inf", 1)
            pipe.hincrbyfloat(key, "sum", float(s))
            pipe.hincrby(key, "count", 1)
        pipe.execute()


def record_retention(client, keys: Keys, report) -> None:
    """A retention pass's totals, for /metrics: deletions add up, what is kept is the latest figure."""
    pipe = client.pipeline(transaction=True)
    for k in report.kinds:
        pipe.hincrby(keys("stats", "retention"), f"{k.kind}|deleted_files", k.deleted_files)
        pipe.hincrby(keys("stats", "retention"), f"{k.kind}|deleted_bytes", k.deleted_bytes)
        pipe.hset(keys("stats", "retention", "last"), mapping={f"{k.kind}|kept_files": k.kept_files,
                                                              f"{k.kind}|kept_bytes": k.kept_bytes})
    pipe.hset(keys("stats", "retention", "last"), "at", report.at)
    pipe.execute()


class SharedCollector:
    """API side: a prometheus-client collector reading the totals from Redis."""

    def __init__(self, client, keys: Keys, queue, webhooks) -> None:
        self.r = client
        self.k = keys
        self.queue = queue
        self.webhooks = webhooks

    def collect(self):
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        depth = self.queue.depth()
        stats = self.queue.stats()
        jobs = GaugeMetricFamily("sludge_jobs", "Jobs by state (queued: not yet read; in_flight: read, "
                                 "not acknowledged; dead: in the dead-letter stream)", labels=["state"])
        for state in ("queued", "in_flight", "dead"):
            jobs.add_metric([state], depth[state])
        yield jobs
        done = CounterMetricFamily("sludge_jobs_events", "Job outcomes since the data began", labels=["event"])
        for ev in ("accepted", "decided", "failed", "duplicate_deliveries"):
            done.add_metric([ev], stats.get(ev, 0))
        yield done
        yield GaugeMetricFamily("sludge_queue_lag_seconds", "Age of the oldest job not yet decided",
                                value=depth["oldest_age_s"])
        matches = CounterMetricFamily("sludge_policy_matches", "Decided videos matching each policy",
                                      labels=["policy"])
        for policy, n in sorted(self.queue.matches().items()):
            matches.add_metric([policy], n)
        yield matches
        hooks = CounterMetricFamily("sludge_webhook_deliveries", "Webhook attempts by event and outcome "
                                    "(delivered, failed_attempt, dead)", labels=["event", "outcome"])
        for (event, outcome), n in sorted(self.webhooks.counts().items()):
            hooks.add_metric([event, outcome], n)
        yield hooks
        totals = self.r.hgetall(self.k("stats", "retention"))
        last = self.r.hgetall(self.k("stats", "retention", "last"))
        deleted = CounterMetricFamily("sludge_retention_deleted", "Stored files removed by retention",
                                      labels=["kind", "unit"])
        kept = GaugeMetricFamily("sludge_retention_kept", "Stored files kept after the last retention pass",
                                 labels=["kind", "unit"])
        for kind in ("uploads", "thumbs"):
            for unit in ("files", "bytes"):
                deleted.add_metric([kind, unit], int(totals.get(f"{kind}|deleted_{unit}", 0)))
                kept.add_metric([kind, unit], int(last.get(f"{kind}|kept_{unit}", 0)))
        yield deleted
        yield kept
        yield GaugeMetricFamily("sludge_retention_last_run_timestamp_seconds", "When retention last ran (0: never)",
                                value=float(last.get("at", 0.0)))
        hist = HistogramMetricFamily("sludge_stage_seconds", "Worker time per pipeline stage", labels=["stage"])
        for stage in STAGES:
            h = self.r.hgetall(self.k("stats", "stage", stage))
            if not h:
                continue
            cum, buckets = 0, []
            for b in BUCKETS:
                cum += int(h.get(str(b), 0))
                buckets.append((str(b), cum))
            buckets.append(("+Inf", int(h.get("count", 0))))
            hist.add_metric([stage], buckets, float(h.get("sum", 0.0)))
        yield hist
