"""Retention of stored uploads and thumbnails: by age and by total size.

Uploads (``api.upload_dir``) and fetched URLs are kept after their decision, so
that a video can be indexed again (a new model, a reviewer's request); the
thumbnails are what the reviewer console shows. Neither may grow without
bound. A pass deletes, per kind, everything older than ``max_age_days``, then
the oldest until the rest fits ``max_bytes``. Uploads whose job is still
queued or processing are never deleted; an upload with no job at all (the API
died between saving it and queuing the job) counts as finished once it is an
hour old. Thumbnails go a whole video at a time.

``sludge retention apply`` runs a pass by hand; workers run one every
``retention.interval_s`` (one worker at a time, under a Redis lock) and the
API's ``/metrics`` reports the totals.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: An upload's file name: the job id it belongs to, then its suffix (``.video`` for a fetched URL,
#: ``.part`` for one being fetched).
UPLOAD_NAME = re.compile(r"^(job_[0-9a-f]{20})\.")
#: An upload without a job is left alone this long (its job may be on the way).
ORPHAN_GRACE_S = 3600.0
DAY_S = 86400.0


@dataclass
class Item:
    """One unit retention keeps or deletes: a file (upload) or a folder (one video's thumbnails)."""

    path: Path
    bytes: int
    mtime: float
    job_id: str | None = None


@dataclass
class KindReport:
    kind: str
    kept_files: int = 0
    kept_bytes: int = 0
    deleted_files: int = 0
    deleted_bytes: int = 0
    skipped_in_use: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class RetentionReport:
    dry_run: bool
    at: float
    kinds: list[KindReport]

    def to_dict(self) -> dict:
        return asdict(self)


def _size(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def upload_items(root: Path) -> list[Item]:
    out = []
    for p in root.iterdir() if root.is_dir() else []:
        if not p.is_file():
            continue
        m = UPLOAD_NAME.match(p.name)
        st = p.stat()
        out.append(Item(p, st.st_size, st.st_mtime, m.group(1) if m else None))
    return out


def thumb_items(root: Path) -> list[Item]:
    """One item per video folder (``root/<id[:2]>/<id>``), dated by its newest file."""
    out = []
    for shard in root.iterdir() if root.is_dir() else []:
        if not shard.is_dir():
            continue
        for d in shard.iterdir():
            if d.is_dir():
                files = [f for f in d.iterdir() if f.is_file()]
                mtime = max((f.stat().st_mtime for f in files), default=d.stat().st_mtime)
                out.append(Item(d, sum(f.stat().st_size for f in files), mtime))
    return out


def apply_policy(kind: str, items: list[Item], *, max_age_days: float | None, max_bytes: int | None,
                 in_use: Callable[[Item], bool] = lambda _i: False, now: float | None = None,
                 dry_run: bool = False) -> KindReport:
    """Delete what is too old, then the oldest until the rest fits; never what ``in_use`` says is busy."""
    now = time.time() if now is None else now
    rep = KindReport(kind)
    keep: list[Item] = []
    doomed: list[Item] = []
    for it in sorted(items, key=lambda i: i.mtime):
        if max_age_days is not None and now - it.mtime > max_age_days * DAY_S:
            doomed.append(it)
        else:
            keep.append(it)
    if max_bytes is not None:
        total = sum(i.bytes for i in keep)
        while keep and total > max_bytes:
            it = keep.pop(0)  # oldest first
            doomed.append(it)
            total -= it.bytes
    survivors = list(keep)
    for it in doomed:
        if in_use(it):
            rep.skipped_in_use += 1
            survivors.append(it)
            continue
        if not dry_run:
            try:
                if it.path.is_dir():
                    shutil.rmtree(it.path)
                else:
                    it.path.unlink(missing_ok=True)
            except OSError as e:
                rep.errors.append(f"{it.path.name}: {e}")
                survivors.append(it)
                continue
        rep.deleted_files += 1
        rep.deleted_bytes += it.bytes
    rep.kept_files = len(survivors)
    rep.kept_bytes = sum(i.bytes for i in survivors)
    return rep


def run_retention(settings, *, job_state: Callable[[str], str | None] | None = None,
                  dry_run: bool = False, now: float | None = None) -> RetentionReport:
    """One pass over uploads and thumbnails with ``settings.retention``.

    ``job_state(job_id)``: the job's state (None when there is no such job); without it
    (no Redis configured) an upload is judged by its age alone.
    """
    r = settings.retention
    now = time.time() if now is None else now

    def upload_busy(it: Item) -> bool:
        if job_state is None:
            return False
        state = job_state(it.job_id) if it.job_id else None
        if state is None:  # no job (yet): give the API time to queue it
            return now - it.mtime < ORPHAN_GRACE_S
        return state in ("queued", "processing")

    kinds = [
        apply_policy("uploads", upload_items(settings.uploads_dir), max_age_days=r.uploads_max_age_days,
                     max_bytes=r.uploads_max_bytes, in_use=upload_busy, now=now, dry_run=dry_run),
        apply_policy("thumbs", thumb_items(settings.thumbs_dir), max_age_days=r.thumbs_max_age_days,
                     max_bytes=r.thumbs_max_bytes, now=now, dry_run=dry_run),
    ]
    return RetentionReport(dry_run, now, kinds)
