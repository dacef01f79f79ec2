"""Webhook subscriptions and deliveries, signed per the Standard Webhooks specification.

Each delivery is a Redis hash with a deterministic id (event, subject,
subscription), created at most once, so a job decided twice still sends one
message; the id is the ``webhook-id`` header a receiver deduplicates on. The
signature is made by the ``standardwebhooks`` package (HMAC-SHA256 over
``id.timestamp.body`` with the subscription's ``whsec_`` secret), so any
receiver verifies it with an existing library.

Due deliveries wait in a sorted set scored by their next attempt time. A
dispatcher claims one by pushing its score a lease into the future (atomic,
in Lua): a dispatcher that dies mid-send leaves the delivery due again when
the lease ends. Failures back off exponentially with jitter; after
``max_attempts`` a delivery is dead, listed and redeliverable. The retry
schedule is kept in Redis rather than in an in-process retry loop (tenacity)
because it must survive the process and be shared by every worker.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ops.hooks.errors import BadSource, JobNotFound
from ops.hooks.redis_conn import Keys, parse_subset

EVENTS = ("video.flagged", "video.cleared", "video.review", "sweep.candidate")
# The event a worker's decision sends. 'review' (the cascade could not decide) is an event too: a
# platform holds such a video back, or routes it to its own moderators, until a person decides.
EVENT_OF_DECISION = {"flagged": "video.flagged", "cleared": "video.cleared", "review": "video.review"}
TEST_EVENT = "webhook.test"

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[2])
return 1
"""
_CLAIM = """
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) > tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""


@dataclass
class Subscription:
    sub_id: str
    url: str
    events: list[str]
    secret: str
    created_at: float
    description: str = ""

    def public(self, *, with_secret: bool = False) -> dict[str, Any]:
        d = {"id": self.sub_id, "url": self.url, "events": self.events, "created_at": self.created_at,
             "description": self.description}
        if with_secret:
            d["secret"] = self.secret
        return d


def parse_events(text: str | list[str]) -> list[str]:
    return parse_subset(text, EVENTS, "events")


def delivery_id(event: str, subject: str, sub_id: str) -> str:
    return "msg_" + hashlib.sha256(f"{event}\n{subject}\n{sub_id}".encode()).hexdigest()[:26]


def backoff(attempt: int, base_s: float, max_s: float) -> float:
    """Delay before attempt ``attempt + 1``: exponential, capped, 'equal jitter' (half fixed, half random)."""
    d = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    return d / 2 + random.uniform(0, d / 2)


def sign_headers(secret: str, msg_id: str, timestamp: float, body: str) -> dict[str, str]:
    from standardwebhooks.webhooks import Webhook

    ts = datetime.fromtimestamp(int(timestamp), tz=UTC)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(timestamp)),
            "webhook-signature": Webhook(secret).sign(msg_id, ts, body), "content-type": "application/json"}


class Webhooks:
    def __init__(self, client, keys: Keys, *, timeout_s: float = 10.0, max_attempts: int = 12,
                 backoff_s: float = 2.0, backoff_max_s: float = 3600.0, lease_s: float = 60.0,
                 url_allow: list[str] | None = None, allow_private: bool = False) -> None:
        self.r = client
        self.k = keys
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.lease_s = lease_s
        self.url_allow = url_allow or []
        self.allow_private = allow_private
        self._create = client.register_script(_CREATE)
        self._claim = client.register_script(_CLAIM)
        self._http = None

    # -- subscriptions --------------------------------------------------------------------

    def add(self, url: str, events: list[str], description: str = "") -> Subscription:
        from ops.hooks.sources import check_url

        events = parse_events(events)
        check_url(url, self.url_allow, allow_private=self.allow_private)
        sub = Subscription("sub_" + secrets.token_hex(8), url, events,
                           "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(), time.time(), description)
        self.r.hset(self.k("sub", sub.sub_id), mapping={"url": url, "events": ",".join(events), "secret": sub.secret,
                                                        "created_at": sub.created_at, "description": description})
        self.r.sadd(self.k("subs"), sub.sub_id)
        return sub

    def get(self, sub_id: str) -> Subscription:
        h = self.r.hgetall(self.k("sub", sub_id))
        if not h:
            raise JobNotFound(f"no webhook subscription {sub_id!r} (see `sludge hooks list`)")
        return Subscription(sub_id, h["url"], h["events"].split(","), h["secret"], float(h["created_at"]),
                            h.get("description", ""))

    def list(self) -> list[Subscription]:
        return sorted((self.get(s) for s in self.r.smembers(self.k("subs"))), key=lambda s: s.created_at)

    def remove(self, sub_id: str) -> Subscription:
        sub = self.get(sub_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.k("sub", sub_id))
        pipe.srem(self.k("subs"), sub_id)
        pipe.execute()
        return sub

    # -- deliveries ---------------------------------------------------------------------------

    def emit(self, event: str, subject: str, data: dict[str, Any]) -> list[str]:
        """Create one delivery per subscriber of ``event`` (once per subject); returns the new ids."""
        made = []
        for sub in self.list():
            if event not in sub.events:
                continue
            did = delivery_id(event, subject, sub.sub_id)
            if self._new_delivery(did, sub, event, subject, data):
                made.append(did)
        return made

    def _new_delivery(self, did: str, sub: Subscription, event: str, subject: str, data: dict[str, Any]) -> bool:
        now = time.time()
        body = json.dumps({"type": event, "timestamp": datetime.fromtimestamp(now, tz=UTC).isoformat(),
                           "data": data}, separators=(",", ":"), default=str)
        fields = {"sub": sub.sub_id, "event": event, "subject": subject, "body": body, "state": "pending",
                  "attempts": 0, "created_at": now, "next_at": now, "last_status": "", "last_error": ""}
        flat = [x for kv in fields.items() for x in kv]
        return bool(self._create(keys=[self.k("delivery", did), self.k("due"), self.k("deliveries")],
                                 args=[now, did, *flat]))

    def get_delivery(self, did: str) -> dict[str, Any]:
        h = self.r.hgetall(self.k("delivery", did))
        if not h:
            raise JobNotFound(f"no webhook delivery {did!r} (see `sludge hooks deliveries`)")
        return {"id": did, **h, "attempts": int(h["attempts"])}

    def deliveries(self, *, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        ids = self.r.zrevrange(self.k("deliveries"), 0, -1 if state else limit - 1)
        out = []
        for did in ids:
            d = self.get_delivery(did)
            if state is None or d["state"] == state:
                out.append(d)
            if len(out) >= limit:
                break
        return out

    def redeliver(self, did: str) -> dict[str, Any]:
        """Send again now (a dead one gets a fresh set of attempts); the webhook-id stays the same."""
        d = self.get_delivery(did)
        now = time.time()
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k("delivery", did), mapping={"state": "pending", "attempts": 0, "next_at": now})
        pipe.zadd(self.k("due"), {did: now})
        pipe.zrem(self.k("dead"), did)
        pipe.execute()
        return {**d, "state": "pending"}

    def dispatch_due(self, *, limit: int = 20) -> int:
        """Send what is due now; returns the number of attempts made."""
        now = time.time()
        made = 0
        for did in self.r.zrangebyscore(self.k("due"), "-inf", now, start=0, num=limit):
            if not self._claim(keys=[self.k("due")], args=[did, now, now + self.lease_s]):
                continue  # another dispatcher took it
            self.attempt(did)
            made += 1
        return made

    def attempt(self, did: str) -> dict[str, Any]:
        """One signed POST of a delivery; reschedules or kills it on failure."""
        import httpx

        d = self.get_delivery(did)
        try:
            sub = self.get(d["sub"])
        except JobNotFound:  # the subscription was removed: nothing to send to
            self._finish(did, "dead", d["attempts"], "", "subscription removed")
            return {**d, "state": "dead"}
        attempt = d["attempts"] + 1
        status, error = "", ""
        t0 = time.perf_counter()
        try:
            from ops.hooks.sources import check_url, pinned

            target, host, extensions = pinned(sub.url, check_url(sub.url, self.url_allow,
                                                                 allow_private=self.allow_private))
            headers = {**sign_headers(sub.secret, did, time.time(), d["body"]), **host}
            if self._http is None:
                self._http = httpx.Client(timeout=self.timeout_s, follow_redirects=False)
            resp = self._http.post(target, content=d["body"].encode(), headers=headers, extensions=extensions)
            status = str(resp.status_code)
            ok = 200 <= resp.status_code < 300
            if not ok:
                error = f"HTTP {resp.status_code}: {resp.text[:200]}"
        except (httpx.HTTPError, BadSource) as e:
            ok, error = False, f"{e.__class__.__name__}: {e}"
        seconds = time.perf_counter() - t0
        self._log_attempt(did, attempt, status, error, seconds)
        if ok:
            self._finish(did, "delivered", attempt, status, "")
            self._count(d["event"], "delivered")
            return {**d, "state": "delivered", "attempts": attempt, "last_status": status}
        self._count(d["event"], "failed_attempt")
        if attempt >= self.max_attempts:
            self._finish(did, "dead", attempt, status, error)
            self._count(d["event"], "dead")
            return {**d, "state": "dead", "attempts": attempt, "last_error": error}
        nxt = time.time() + backoff(attempt, self.backoff_s, self.backoff_max_s)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k("delivery", did), mapping={"attempts": attempt, "last_status": status, "last_error": error,
                                                    "next_at": nxt, "state": "retrying"})
        pipe.zadd(self.k("due"), {did: nxt})
        pipe.execute()
        return {**d, "state": "retrying", "attempts": attempt, "last_error": error, "next_at": nxt}

    def _finish(self, did: str, state: str, attempts: int, status: str, error: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k("delivery", did), mapping={"state": state, "attempts": attempts, "last_status": status,
                                                    "last_error": error, "finished_at": time.time()})
        pipe.zrem(self.k("due"), did)
        if state == "dead":
            pipe.zadd(self.k("dead"), {did: time.time()})
        pipe.execute()

    def _log_attempt(self, did: str, attempt: int, status: str, error: str, seconds: float) -> None:
        entry = json.dumps({"attempt": attempt, "at": time.time(), "status": status, "error": error,
                            "seconds": round(seconds, 4)})
        pipe = self.r.pipeline(transaction=False)
        pipe.rpush(self.k("delivery", did, "log"), entry)
        pipe.ltrim(self.k("delivery", did, "log"), -100, -1)
        pipe.execute()

    def attempts_log(self, did: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.r.lrange(self.k("delivery", did, "log"), 0, -1)]

    def _count(self, event: str, outcome: str) -> None:
        self.r.hincrby(self.k("stats", "webhooks"), f"{event}|{outcome}", 1)

    def counts(self) -> dict[tuple[str, str], int]:
        return {tuple(k.split("|", 1)): int(v) for k, v in self.r.hgetall(self.k("stats", "webhooks")).items()}

    def test(self, sub_id: str) -> dict[str, Any]:
        """Send a ``webhook.test`` message now, outside the retry schedule; returns the attempt's outcome."""
        sub = self.get(sub_id)
        did = "msg_test_" + secrets.token_hex(8)
        self._new_delivery(did, sub, TEST_EVENT, did, {"subscription": sub_id, "message": "test delivery"})
        self.r.zrem(self.k("due"), did)  # sent here and now, once
        saved, self.max_attempts = self.max_attempts, 1
        try:
            return self.attempt(did)
        finally:
            self.max_attempts = saved

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
