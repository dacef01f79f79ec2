"""Jobs on a Redis Stream with a consumer group: at-least-once, exactly one decision.

A job is a hash (``<prefix>:job:<id>``) plus one stream entry pointing at it.
Workers read with XREADGROUP, take over entries idle longer than
``claim_idle_s`` with XAUTOCLAIM (a crashed worker's jobs), and acknowledge
only after the decision is stored. The decision is written with HSETNX, so a
job delivered twice still has one decision; the webhooks that follow it are
created under deterministic ids, so a redelivery cannot send a second one.
A job that fails ``max_attempts`` times goes to the dead-letter stream with
its error.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from ops.hooks.errors import Conflict, JobNotFound
from ops.hooks.redis_conn import Keys

STATES = ("queued", "processing", "decided", "failed")
DECISIONS_KEPT = 100_000  # the live feed's length (older decisions stay in their jobs and the history)


@dataclass
class Job:
    job_id: str
    state: str
    source: dict[str, Any]  # {"kind": "upload"|"url"|"path", ...}
    created_at: float
    updated_at: float
    attempts: int = 0
    key_id: str | None = None
    video_id: str | None = None
    decision: dict[str, Any] | None = None
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        src = {k: v for k, v in self.source.items() if k != "stored"}  # no server paths in answers
        return {"id": self.job_id, "state": self.state, "source": src, "created_at": self.created_at,
                "updated_at": self.updated_at, "attempts": self.attempts, "video_id": self.video_id,
                "decision": self.decision, "error": self.error, "meta": self.meta}


def fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class JobQueue:
    def __init__(self, client, keys: Keys, *, group: str = "sludge-workers", max_attempts: int = 3,
                 idempotency_ttl_s: int = 86400) -> None:
        self.r = client
        self.k = keys
        self.group = group
        self.max_attempts = max_attempts
        self.idempotency_ttl_s = idempotency_ttl_s

    # -- producer side ------------------------------------------------------------------

    def ensure_group(self) -> None:
        import redis

        try:
            self.r.xgroup_create(self.k.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def new_id(self) -> str:
        return "job_" + secrets.token_hex(10)

    def claim_idempotency(self, key_id: str, idem_key: str, job_id: str, fp: str) -> str | None:
        """None when this request owns the key now; else the job id an earlier request made with it."""
        if not idem_key or len(idem_key) > 255:
            raise Conflict("Idempotency-Key must be 1 to 255 characters")
        rk = self.k("idem", key_id, hashlib.sha256(idem_key.encode()).hexdigest()[:32])
        if self.r.set(rk, f"{job_id} {fp}", nx=True, ex=self.idempotency_ttl_s):
            return None
        earlier = self.r.get(rk) or ""
        old_id, _, old_fp = earlier.partition(" ")
        if old_fp != fp:
            raise Conflict("this Idempotency-Key was used with a different request; use a new key per video")
        return old_id

    def submit(self, job_id: str, source: dict[str, Any], *, key_id: str | None,
               meta: dict[str, Any] | None = None) -> Job:
        now = time.time()
        job = Job(job_id, "queued", source, now, now, key_id=key_id, meta=meta or {})
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k("job", job_id), mapping={
            "state": "queued", "source": json.dumps(source), "created_at": now, "updated_at": now,
            "attempts": 0, "key_id": key_id or "", "meta": json.dumps(job.meta)})
        pipe.xadd(self.k.stream, {"job": job_id, "at": now})
        pipe.hincrby(self.k("stats"), "accepted", 1)
        pipe.execute()
        return job

    def get(self, job_id: str) -> Job:
        h = self.r.hgetall(self.k("job", job_id))
        if not h:
            raise JobNotFound(f"no job {job_id!r}")
        return Job(job_id, h["state"], json.loads(h["source"]), float(h["created_at"]), float(h["updated_at"]),
                   int(h.get("attempts") or 0), h.get("key_id") or None, h.get("video_id") or None,
                   json.loads(h["decision"]) if h.get("decision") else None, h.get("error") or None,
                   json.loads(h.get("meta") or "{}"))

    # -- worker side --------------------------------------------------------------------

    def read(self, consumer: str, *, count: int = 1, block_ms: int = 2000) -> list[tuple[str, str]]:
        """New entries for this consumer: (entry id, job id)."""
        got = self.r.xreadgroup(self.group, consumer, {self.k.stream: ">"}, count=count, block=block_ms)
        return [(eid, f["job"]) for _stream, entries in (got or []) for eid, f in entries if f]

    def reclaim(self, consumer: str, idle_ms: int, *, count: int = 10) -> list[tuple[str, str]]:
        """Entries another consumer left unacknowledged for ``idle_ms``: now this consumer's."""
        got = self.r.xautoclaim(self.k.stream, self.group, consumer, idle_ms, "0-0", count=count)
        entries, deleted = got[1], (got[2] if len(got) > 2 else [])
        for eid in deleted:  # trimmed from the stream meanwhile: nothing left to do
            self.r.xack(self.k.stream, self.group, eid)
        return [(eid, f["job"]) for eid, f in entries if f]

    def touch(self, consumer: str, entry_id: str) -> None:
        """Reset the entry's idle time: a long job is not taken over while its worker is alive."""
        self.r.xclaim(self.k.stream, self.group, consumer, 0, [entry_id], justid=True)

    def start(self, job_id: str, consumer: str) -> int:
        """Mark processing; returns the attempt number (deliveries so far, this one included)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hincrby(self.k("job", job_id), "attempts", 1)
        pipe.hset(self.k("job", job_id), mapping={"state": "processing", "updated_at": time.time(),
                                                  "worker": consumer})
        attempts, _ = pipe.execute()
        return int(attempts)

    def decide(self, job_id: str, decision: dict[str, Any], video_id: str | None) -> bool:
        """Store the decision once; False when an earlier delivery already stored one."""
        key = self.k("job", job_id)
        first = self.r.hsetnx(key, "decision", json.dumps(decision))
        if first:
            pipe = self.r.pipeline(transaction=True)
            pipe.hset(key, mapping={"state": "decided", "updated_at": time.time(), "video_id": video_id or "",
                                    "error": ""})
            pipe.hincrby(self.k("stats"), "decided", 1)
            for policy in decision.get("matched_policies", []):
                pipe.hincrby(self.k("stats", "matches"), policy, 1)
            # The reviewer console's live feed, and each video's decision history.
            pipe.xadd(self.k("decisions"), {"job": job_id, "video_id": video_id or "",
                                            "decision": decision.get("decision", ""),
                                            "policies": ",".join(decision.get("matched_policies", []))},
                      maxlen=DECISIONS_KEPT, approximate=True)
            if video_id:
                pipe.rpush(self.k("video", video_id, "jobs"), job_id)
            pipe.execute()
        else:
            self.note_duplicate()
        return bool(first)

    def note_duplicate(self) -> None:
        """A job delivered again after its decision was stored (counted for /metrics)."""
        self.r.hincrby(self.k("stats"), "duplicate_deliveries", 1)

    def fail(self, job_id: str, entry_id: str, error: str, *, permanent: bool, attempts: int) -> bool:
        """Record a failure; dead-letter it when permanent or out of attempts. True when it is final."""
        final = permanent or attempts >= self.max_attempts
        key = self.k("job", job_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(key, mapping={"error": error, "updated_at": time.time(),
                                "state": "failed" if final else "queued"})
        if final:
            pipe.xadd(self.k.dead, {"job": job_id, "entry": entry_id, "error": error[:2000],
                                    "attempts": attempts, "at": time.time()})
            pipe.xack(self.k.stream, self.group, entry_id)
            pipe.hincrby(self.k("stats"), "failed", 1)
        pipe.execute()
        return final

    def ack(self, entry_id: str) -> None:
        self.r.xack(self.k.stream, self.group, entry_id)

    def recent_decisions(self, count: int = 50, after: str | None = None) -> list[dict[str, Any]]:
        """The newest decisions first; ``after``: only those newer than that feed entry id."""
        lo = "(" + after if after else "-"
        return [{"entry": eid, **f} for eid, f in self.r.xrevrange(self.k("decisions"), max="+", min=lo,
                                                                  count=count)]

    def jobs_of_video(self, video_id: str) -> list[Job]:
        return [self.get(j) for j in self.r.lrange(self.k("video", video_id, "jobs"), 0, -1)]

    def dead_letters(self, count: int = 100) -> list[dict[str, Any]]:
        return [{"entry": eid, **f} for eid, f in self.r.xrevrange(self.k.dead, count=count)]

    # -- for /metrics and /readyz -------------------------------------------------------------

    def depth(self) -> dict[str, float]:
        """Queue depth (not yet delivered), in flight (delivered, not acknowledged) and the oldest's age."""
        self.ensure_group()
        info = next((g for g in self.r.xinfo_groups(self.k.stream) if g["name"] == self.group), {})
        lag = info.get("lag")
        if lag is None:  # Redis < 7 or an inexact lag: count the entries after the last delivered one
            lag = len(self.r.xrange(self.k.stream, "(" + info.get("last-delivered-id", "0-0"), "+", count=100000))
        pending = self.r.xpending(self.k.stream, self.group)
        oldest = None
        if lag:
            first = self.r.xrange(self.k.stream, "(" + info.get("last-delivered-id", "0-0"), "+", count=1)
            oldest = first[0][0] if first else None
        elif pending and pending.get("pending"):
            oldest = pending["min"]
        age = max(0.0, time.time() - int(oldest.split("-")[0]) / 1000.0) if oldest else 0.0
        return {"queued": int(lag or 0), "in_flight": int(pending.get("pending", 0) if pending else 0),
                "oldest_age_s": age, "dead": int(self.r.xlen(self.k.dead))}

    def stats(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.r.hgetall(self.k("stats")).items()}

    def matches(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.r.hgetall(self.k("stats", "matches")).items()}
