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

from ops.faults import fault_point
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


# KEYS: idempotency key, job hash, stream, stats. ARGV: has-key flag, job id, fingerprint, ttl,
# job key prefix, now, then the job's fields. Returns {outcome, job id}: new | replay | conflict.
_SUBMIT = """
if ARGV[1] == '1' then
  local earlier = redis.call('GET', KEYS[1])
  if earlier then
    local sp = string.find(earlier, ' ', 1, true)
    local old_id, old_fp = string.sub(earlier, 1, sp - 1), string.sub(earlier, sp + 1)
    if old_fp ~= ARGV[3] then return {'conflict', old_id} end
    if redis.call('EXISTS', ARGV[5] .. old_id) == 1 then return {'replay', old_id} end
  end
  redis.call('SET', KEYS[1], ARGV[2] .. ' ' .. ARGV[3], 'EX', tonumber(ARGV[4]))
end
redis.call('HSET', KEYS[2], unpack(ARGV, 7))
redis.call('XADD', KEYS[3], '*', 'job', ARGV[2], 'at', ARGV[6])
redis.call('HINCRBY', KEYS[4], 'accepted', 1)
return {'new', ARGV[2]}
"""

# KEYS: job hash, stats, matches, decision feed, the video's job list. ARGV: decision JSON, job id,
# video id, decision word, policies joined, now, feed length, then each matched policy.
# Returns 1 when this call wrote the decision (or completed a half-written one), else 0.
_DECIDE = """
if redis.call('HSETNX', KEYS[1], 'decision', ARGV[1]) == 0 then
  if redis.call('HGET', KEYS[1], 'state') == 'decided' then return 0 end
end
redis.call('HSET', KEYS[1], 'state', 'decided', 'updated_at', ARGV[6], 'video_id', ARGV[3], 'error', '')
redis.call('HINCRBY', KEYS[2], 'decided', 1)
for i = 8, #ARGV do redis.call('HINCRBY', KEYS[3], ARGV[i], 1) end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', 'job', ARGV[2], 'video_id', ARGV[3],
           'decision', ARGV[4], 'policies', ARGV[5])
if ARGV[3] ~= '' then redis.call('RPUSH', KEYS[5], ARGV[2]) end
return 1
"""


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
        self._submit = client.register_script(_SUBMIT)
        self._decide = client.register_script(_DECIDE)

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

    def submit(self, job_id: str, source: dict[str, Any], *, key_id: str | None,
               meta: dict[str, Any] | None = None, idempotency: tuple[str, str] | None = None) -> tuple[Job, bool]:
        """Queue a job; ``idempotency``: (the client's Idempotency-Key, the request's fingerprint).

        Returns (job, replayed): with a key seen before for the same request, the
        earlier job and True; with the same key and another request, Conflict.
        Reserving the key, writing the job and queuing it are one Lua script, so a
        crash (of this process or of Redis) leaves all of them or none: never a key
        that names a job that does not exist. A reservation left without its job
        by an older version is taken over by the retry.
        """
        now = time.time()
        job = Job(job_id, "queued", source, now, now, key_id=key_id, meta=meta or {})
        fields = {"state": "queued", "source": json.dumps(source), "created_at": now, "updated_at": now,
                  "attempts": 0, "key_id": key_id or "", "meta": json.dumps(job.meta)}
        idem_key, fp = ("", "")
        if idempotency is not None:
            idem_key, fp = idempotency
            idem_key = self.k("idem", key_id or "-", hashlib.sha256(idem_key.encode()).hexdigest()[:32])
        outcome, old_id = self._submit(
            keys=[idem_key or self.k("idem", "-"), self.k("job", job_id), self.k.stream, self.k("stats")],
            args=["1" if idempotency is not None else "0", job_id, fp, self.idempotency_ttl_s, self.k("job", ""),
                  repr(now), *[x for kv in fields.items() for x in kv]])
        if outcome == "conflict":
            raise Conflict("this Idempotency-Key was used with a different request; use a new key per video")
        if outcome == "replay":
            return self.get(old_id), True
        fault_point("jobs.after_submit")
        return job, False

    def get(self, job_id: str) -> Job:
        h = self.r.hgetall(self.k("job", job_id))
        if not h:
            raise JobNotFound(f"no job {job_id!r}")
        return _job(job_id, h)

    def get_many(self, job_ids: list[str]) -> dict[str, Job]:
        """The jobs that exist among ``job_ids``, read in one round trip (pages list dozens to hundreds)."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.k("job", job_id))
        return {job_id: _job(job_id, h) for job_id, h in zip(job_ids, pipe.execute()) if h}

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
        """Store the decision and everything that follows from it, at once; False when it was stored before.

        The decision, the job's state, the counters, the live feed and the video's
        job list are written by one Lua script: a worker killed at any point leaves
        either none of them or all of them (never a decided job stuck in
        ``processing``). A job an older version left half-written (decision set,
        state not) is completed here.
        """
        policies = decision.get("matched_policies", [])
        first = self._decide(
            keys=[self.k("job", job_id), self.k("stats"), self.k("stats", "matches"), self.k("decisions"),
                  self.k("video", video_id or "-", "jobs")],
            args=[json.dumps(decision), job_id, video_id or "", decision.get("decision", ""), ",".join(policies),
                  repr(time.time()), DECISIONS_KEPT, *policies])
        if not first:
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

    def recent_decisions(self, count: int = 50, after: str | None = None,
                         before: str | None = None) -> list[dict[str, Any]]:
        """The newest decisions first; ``after``: only those newer than that feed entry id; ``before``: only
        those older (the next page)."""
        lo = "(" + after if after else "-"
        hi = "(" + before if before else "+"
        return [{"entry": eid, **f} for eid, f in self.r.xrevrange(self.k("decisions"), max=hi, min=lo,
                                                                  count=count)]

    def jobs_of_video(self, video_id: str) -> list[Job]:
        ids = self.r.lrange(self.k("video", video_id, "jobs"), 0, -1)
        found = self.get_many(ids)
        return [found[j] for j in ids if j in found]

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


def _job(job_id: str, h: dict[str, str]) -> Job:
    return Job(job_id, h["state"], json.loads(h["source"]), float(h["created_at"]), float(h["updated_at"]),
               int(h.get("attempts") or 0), h.get("key_id") or None, h.get("video_id") or None,
               json.loads(h["decision"]) if h.get("decision") else None, h.get("error") or None,
               json.loads(h.get("meta") or "{}"))
