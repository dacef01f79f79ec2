"""Retention of stored uploads and thumbnails: by age, by total size, never what a job still needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ops.retention import DAY_S, ORPHAN_GRACE_S, Item, apply_policy, run_retention

SLUDGE = str(Path(sys.executable).parent / "sludge")


def _file(p: Path, size: int, age_s: float, now: float) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x" * size)
    os.utime(p, (now - age_s, now - age_s))
    return p


def test_too_old_first_then_oldest_until_it_fits(tmp_path):
    now = time.time()
    items = [Item(_file(tmp_path / f"job_{i:020x}.mp4", 100, age, now), 100, now - age, f"job_{i:020x}")
             for i, age in enumerate([40 * DAY_S, 3 * DAY_S, 2 * DAY_S, 1 * DAY_S, 60])]
    rep = apply_policy("uploads", items, max_age_days=30, max_bytes=250, now=now)
    assert rep.deleted_files == 3 and rep.kept_files == 2 and rep.kept_bytes == 200
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["job_00000000000000000003.mp4",
                                                            "job_00000000000000000004.mp4"]


def test_in_use_is_never_deleted_and_dry_run_deletes_nothing(tmp_path):
    now = time.time()
    items = [Item(_file(tmp_path / f"job_{i:020x}.mp4", 10, 90 * DAY_S, now), 10, now - 90 * DAY_S, f"job_{i:020x}")
             for i in range(3)]
    rep = apply_policy("uploads", items, max_age_days=30, max_bytes=None, now=now, dry_run=True)
    assert rep.deleted_files == 3 and len(list(tmp_path.iterdir())) == 3
    rep = apply_policy("uploads", items, max_age_days=30, max_bytes=None, now=now,
                       in_use=lambda it: it.job_id.endswith("1"))
    assert rep.deleted_files == 2 and rep.skipped_in_use == 1 and len(list(tmp_path.iterdir())) == 1


def test_a_pass_over_uploads_and_thumbnails(tmp_path):
    from ops.config import Settings

    now = time.time()
    s = Settings(data_dir=tmp_path, retention={"uploads_max_age_days": 7, "thumbs_max_bytes": 150})
    up = s.uploads_dir
    _file(up / "job_aaaaaaaaaaaaaaaaaaaa.mp4", 50, 10 * DAY_S, now)  # decided long ago: goes
    _file(up / "job_bbbbbbbbbbbbbbbbbbbb.mp4", 50, 10 * DAY_S, now)  # still queued: stays
    _file(up / "job_cccccccccccccccccccc.video", 50, 10 * DAY_S, now)  # no job record, old: goes
    _file(up / "job_dddddddddddddddddddd.mp4", 50, 60, now)  # no job yet, a minute old: stays (grace)
    for i, age in enumerate([5 * DAY_S, 4 * DAY_S, 1 * DAY_S]):  # three videos' thumbnails, 100 bytes each
        vid = f"{i:x}" * 64
        for ts in ("0.jpg", "1000.jpg"):
            _file(s.thumbs_dir / vid[:2] / vid / ts, 50, age, now)
    states = {"job_aaaaaaaaaaaaaaaaaaaa": "decided", "job_bbbbbbbbbbbbbbbbbbbb": "queued"}
    rep = run_retention(s, job_state=states.get, now=now)
    uploads, thumbs = rep.kinds
    assert uploads.deleted_files == 2 and uploads.skipped_in_use == 1
    assert sorted(p.name for p in up.iterdir()) == ["job_bbbbbbbbbbbbbbbbbbbb.mp4", "job_dddddddddddddddddddd.mp4"]
    assert thumbs.deleted_files == 2 and thumbs.kept_bytes == 100  # the two oldest videos, whole folders
    assert ORPHAN_GRACE_S >= 600


def test_cli_applies_it_with_the_default_settings(tmp_path):
    now = time.time()
    _file(tmp_path / "data" / "uploads" / "job_eeeeeeeeeeeeeeeeeeee.mp4", 10, 31 * DAY_S, now)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUDGE_")}
    env["SLUDGE_DATA_DIR"] = str(tmp_path / "data")
    dry = subprocess.run([SLUDGE, "retention", "apply", "--dry-run", "--json"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["kinds"][0]["deleted_files"] == 1
    assert (tmp_path / "data" / "uploads" / "job_eeeeeeeeeeeeeeeeeeee.mp4").exists()
    done = subprocess.run([SLUDGE, "retention", "apply"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "uploads" in done.stdout, done.stderr
    assert not (tmp_path / "data" / "uploads" / "job_eeeeeeeeeeeeeeeeeeee.mp4").exists()
