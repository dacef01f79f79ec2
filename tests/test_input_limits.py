"""Input the stores and models must refuse with a clear error, whichever front end passes it on."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from indexer.errors import ConfigError, QueryError
from search.errors import StoreError

SLUDGE = str(Path(sys.executable).parent / "sludge")


@pytest.mark.parametrize("t", [1e308, -1e308, math.inf, -math.inf, math.nan, 1e17, -1.0, True])
def test_history_filter_times_out_of_range(t):
    from search.history import HistoryFilter

    with pytest.raises(QueryError, match="epoch seconds"):
        HistoryFilter(since=t)
    with pytest.raises(QueryError):
        HistoryFilter(until=t)


def test_history_filter_accepts_real_times():
    from search.history import HistoryFilter

    assert HistoryFilter(since=0, until=1.8e9).since == 0


@pytest.mark.parametrize("text", ["k_of_n:99999999999999999999", "k_of_n:1001", "k_of_n:0", "k_of_n:-1", "worst"])
def test_rules_out_of_range(text):
    from search.types import Rule

    with pytest.raises(ConfigError, match="rule"):
        Rule.parse(text)


def test_rule_bounds_hold():
    from search.types import MAX_RULE_K, Rule

    assert Rule.parse(f"k_of_n:{MAX_RULE_K}").k == MAX_RULE_K


@pytest.mark.parametrize("text", ["\u0000", "\u0001\u0002", "  \t\n ", "\x7f\x85"])
def test_text_of_no_content_is_refused(encoder, text):
    from search.exemplars import text_exemplar

    with pytest.raises(QueryError, match="empty"):
        text_exemplar(encoder, "p", text)
    with pytest.raises(QueryError, match="empty"):
        encoder.embed_texts([text])


def test_policy_checks_its_description_and_name():
    from search.types import MAX_DESCRIPTION_CHARS, Policy

    with pytest.raises(ConfigError, match="description"):
        Policy("p", 0.3, description="d" * (MAX_DESCRIPTION_CHARS + 1)).check()
    with pytest.raises(ConfigError, match="policy name"):
        Policy("p\n", 0.3).check()  # '$' would have let a final newline through
    with pytest.raises(ConfigError, match="threshold"):
        Policy("p", True).check()


def test_read_only_commands_do_not_wait_for_a_writer(tmp_path, encoder):
    """Another process holding the history's write lock must not stop `history stats` or `recall`."""
    import os

    from search.local.history import LocalHistory

    LocalHistory(tmp_path / "history", model_id=encoder.model_id, dim=encoder.dim).close()
    writer = sqlite3.connect(str(tmp_path / "history" / "history.sqlite3"), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # held, as by an indexer in the middle of a video
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUDGE_")}
        env.update({"SLUDGE_DATA_DIR": str(tmp_path), "SLUDGE_ENCODER__RANDOM_WEIGHTS": "true"})
        for args in (["history", "stats"], ["recall", "--query", "split screen", "--format", "json"]):
            r = subprocess.run([SLUDGE, *args], env=env, capture_output=True, text=True, timeout=25)
            assert r.returncode == 0, (args, r.stderr)
            assert "locked" not in r.stderr and "Traceback" not in r.stderr
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_write_that_cannot_get_the_lock_says_so(tmp_path, monkeypatch):
    from search.local import db

    monkeypatch.setattr(db, "BUSY_TIMEOUT_S", 0.2)
    conn = db.connect(tmp_path / "x.sqlite3")
    conn.execute("PRAGMA busy_timeout = 200")
    other = sqlite3.connect(str(tmp_path / "x.sqlite3"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="busy: another sludge process"):
            with db.transaction(conn):
                pass
    finally:
        other.execute("ROLLBACK")


def test_outbox_note_says_when_the_run_wrote_the_videos_back(tmp_path):
    from search.elastic.history import ElasticHistory
    from search.elastic.outbox import Outbox

    h = ElasticHistory.__new__(ElasticHistory)  # the note's logic only; the server path is tested elsewhere
    h.outbox = Outbox(tmp_path / "outbox")
    h._notes, h._queued, h._queue_reasons = [], 3, ["Elasticsearch at http://x is unreachable"]
    assert "since been written" in h.notices[0] and "flush" not in h.notices[0]
    h.outbox.put("v1", {"video": {}, "frames": []})
    assert h.notices[0].startswith("1 video(s) are kept in the outbox") and "flush" in h.notices[0]


def test_fault_points_fire_only_when_named(monkeypatch, tmp_path):
    from ops import faults

    monkeypatch.delenv("SLUDGE_FAULTS", raising=False)
    faults.fault_point("worker.before_decide")  # nothing happens
    monkeypatch.setenv("SLUDGE_FAULTS", "api.after_upload=raise")
    faults.fault_point("worker.before_decide")
    with pytest.raises(faults.InjectedFault):
        faults.fault_point("api.after_upload")
    faults.fault_point("api.after_upload")  # once per process
