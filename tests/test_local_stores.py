"""The embedded bank and history (faiss + SQLite): behaviour, persistence, crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from indexer.errors import QueryError
from indexer.identity import frame_id
from indexer.records import FrameRecord, Transcript, VideoRecord
from search.errors import ModelMismatchError, NotFoundError, StoreError
from search.local.bank import LocalBank
from search.local.history import LocalHistory
from search.types import Exemplar, Policy, Rule

DIM = 16
MODEL = "test/model"


def unit(rng, n=1, dim=DIM):
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def record(rng, name: str, n_frames=4, transcript="", uploaded_at=None, model=MODEL, dim=DIM) -> VideoRecord:
    vid = (name * 64)[:64]
    emb = unit(rng, n_frames, dim)
    return VideoRecord(
        video_id=vid, path=f"/videos/{name}.mp4", size_bytes=1000, duration=float(n_frames), width=720,
        height=1280, fps=25.0, has_audio=bool(transcript),
        transcript=Transcript(text=transcript, has_speech=bool(transcript), language="en" if transcript else None),
        sampler=f"uniform:{n_frames}", model_id=model,
        frames=[FrameRecord(frame_id(vid, i + 0.5), vid, i + 0.5, emb[i]) for i in range(n_frames)],
        uploaded_at=uploaded_at, indexed_at=time.time(),
    )


# -- bank ---------------------------------------------------------------------------


def text_ex(policy, text):
    return Exemplar("", policy, "text", text, f"hash-{text}", MODEL)


def test_bank_add_list_dedupe_remove(tmp_path):
    rng = np.random.default_rng(0)
    with LocalBank(tmp_path, model_id=MODEL, dim=DIM) as bank:
        bank.ensure_policy("sludge", 0.3)
        v = unit(rng)[0]
        first = bank.add(text_ex("sludge", "split screen"), v)
        again = bank.add(text_ex("sludge", "split screen"), v)
        assert first.created and not again.created
        assert again.exemplar.exemplar_id == first.exemplar.exemplar_id
        assert [e.exemplar_id for e in bank.list()] == [first.exemplar.exemplar_id]
        assert bank.counts() == {"sludge": {"total": 1, "enabled": 1}}
        removed = bank.remove(first.exemplar.exemplar_id[:6])  # unique prefix
        assert removed.exemplar_id == first.exemplar.exemplar_id
        assert bank.list() == []
        with pytest.raises(NotFoundError):
            bank.remove("nonexistent")


def test_bank_knn_scores_are_cosine_and_respect_enable_and_policy(tmp_path):
    rng = np.random.default_rng(1)
    vecs = unit(rng, 6)
    with LocalBank(tmp_path, model_id=MODEL, dim=DIM) as bank:
        bank.ensure_policy("a", 0.5)
        bank.ensure_policy("b", 0.5)
        ids = []
        for i, v in enumerate(vecs):
            ids.append(bank.add(text_ex("a" if i < 3 else "b", f"t{i}"), v).exemplar.exemplar_id)
        res = bank.knn(vecs[[0, 4]], k=3)
        assert res[0][0].exemplar_id == ids[0] and res[0][0].score == pytest.approx(1.0, abs=1e-5)
        assert res[1][0].exemplar_id == ids[4]
        expected = sorted((float(vecs[0] @ v) for v in vecs), reverse=True)[:3]
        assert [m.score for m in res[0]] == pytest.approx(expected, abs=1e-5)
        only_b = bank.knn(vecs[[0]], k=5, policies=["b"])[0]
        assert {m.policy for m in only_b} == {"b"} and len(only_b) == 3
        bank.set_enabled(ids[0], False)
        assert ids[0] not in {m.exemplar_id for m in bank.knn(vecs[[0]], k=6)[0]}
        bank.set_enabled(ids[0], True)
        assert bank.knn(vecs[[0]], k=1)[0][0].exemplar_id == ids[0]


def test_bank_refuses_unknown_policy_wrong_dim_and_other_model(tmp_path):
    rng = np.random.default_rng(2)
    with LocalBank(tmp_path, model_id=MODEL, dim=DIM) as bank:
        with pytest.raises(NotFoundError, match="unknown policy"):
            bank.add(text_ex("nope", "x"), unit(rng)[0])
        bank.ensure_policy("p", 0.2)
        with pytest.raises(ModelMismatchError, match="dimensions"):
            bank.add(text_ex("p", "x"), np.ones(DIM + 1, np.float32))
        bank.add(text_ex("p", "x"), unit(rng)[0])
        assert bank.list()[0].model_id == MODEL
    with pytest.raises(ModelMismatchError, match="holds embeddings of test/model"):
        LocalBank(tmp_path, model_id="other/model", dim=DIM)


def test_policies_and_rules(tmp_path):
    with LocalBank(tmp_path) as bank:
        p, created = bank.ensure_policy("sludge", 0.3)
        assert created and p.rule == Rule("best")
        _, created = bank.ensure_policy("sludge", 0.9)
        assert not created and bank.get_policy("sludge").threshold == 0.3
        bank.put_policy(Policy("sludge", 0.4, Rule.parse("k_of_n:2")))
        assert str(bank.get_policy("sludge").rule) == "k_of_n:2"
        with pytest.raises(Exception, match="invalid policy name"):
            bank.ensure_policy("bad name!", 0.3)


def test_bank_persists_across_reopen(tmp_path):
    rng = np.random.default_rng(3)
    v = unit(rng, 3)
    with LocalBank(tmp_path, model_id=MODEL, dim=DIM) as bank:
        bank.ensure_policy("p", 0.2)
        for i in range(3):
            bank.add(text_ex("p", f"t{i}"), v[i])
        before = bank.knn(v, 2)
    with LocalBank(tmp_path, model_id=MODEL, dim=DIM) as bank:
        assert bank.knn(v, 2) == before


def test_bank_sees_writes_of_another_process(tmp_path):
    """A long-running reader (a server) picks up exemplars added by the CLI."""
    rng = np.random.default_rng(4)
    v = unit(rng, 2)
    reader = LocalBank(tmp_path, model_id=MODEL, dim=DIM)
    writer = LocalBank(tmp_path, model_id=MODEL, dim=DIM)
    writer.ensure_policy("p", 0.2)
    writer.add(text_ex("p", "one"), v[0])
    assert len(reader.knn(v[:1], 5)[0]) == 1
    writer.add(text_ex("p", "two"), v[1])
    assert len(reader.knn(v[:1], 5)[0]) == 2
    writer.remove(writer.list()[0].exemplar_id)
    assert len(reader.knn(v[:1], 5)[0]) == 1
    reader.close()
    writer.close()


# -- history ----------------------------------------------------------------------------


def test_history_add_is_idempotent_and_searchable(tmp_path):
    rng = np.random.default_rng(5)
    recs = [record(rng, c, transcript=f"talking about {c} things") for c in "abc"]
    with LocalHistory(tmp_path, model_id=MODEL, dim=DIM) as h:
        assert all(h.add_video(r) for r in recs)
        assert not h.add_video(recs[0])
        assert h.stats()["videos"] == 3 and h.stats()["frames"] == 12
        q = recs[1].frames[2].embedding
        hits = h.search_frames(q, 5)
        assert hits[0].frame_id == recs[1].frames[2].frame_id
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert [x.score for x in hits] == sorted((x.score for x in hits), reverse=True)
        videos = h.recall(q, limit=2)
        assert videos[0].video_id == recs[1].video_id and videos[0].timestamps[0] == 2.5
        assert len({v.video_id for v in videos}) == 2
        assert "talking about b" in videos[0].snippet


def test_recall_groups_frames_and_widens_until_enough_videos(tmp_path):
    rng = np.random.default_rng(6)
    base = unit(rng)[0]
    with LocalHistory(tmp_path, model_id=MODEL, dim=DIM) as h:
        # one video with 40 near-identical frames to the query, plus 5 other videos
        crowd = record(rng, "z", n_frames=40)
        for f in crowd.frames:
            f.embedding = (base + 0.01 * unit(rng)[0]) / np.linalg.norm(base + 0.01 * unit(rng)[0])
        h.add_video(crowd)
        for c in "abcde":
            h.add_video(record(rng, c))
        hits = h.recall(base, limit=4, frames_per_video=2)
        assert len(hits) == 4 and hits[0].video_id == crowd.video_id
        assert len({x.video_id for x in hits}) == 4
        assert all(x.score >= y.score for x, y in zip(hits, hits[1:]))
        floor = h.recall(base, limit=10, min_score=0.9)
        assert [x.video_id for x in floor] == [crowd.video_id]


def test_history_time_filter_and_transcripts(tmp_path):
    rng = np.random.default_rng(7)
    with LocalHistory(tmp_path, model_id=MODEL, dim=DIM) as h:
        old = record(rng, "o", transcript="ask not what your country can do", uploaded_at=1000.0)
        new = record(rng, "n", transcript="a recipe for pancakes", uploaded_at=2000.0)
        h.add_video(old)
        h.add_video(new)
        q = old.frames[0].embedding
        assert {x.video_id for x in h.search_frames(q, 10, since=1500)} == {new.video_id}
        assert {x.video_id for x in h.search_frames(q, 10, until=1500)} == {old.video_id}
        t = h.search_transcripts("country", 10)
        assert [x.video_id for x in t] == [old.video_id] and "[country]" in t[0].snippet
        assert h.search_transcripts("PANCAKES", 10)[0].video_id == new.video_id
        assert h.search_transcripts("country", 10, since=1500) == []
        # FTS syntax in user input is searched as words, never parsed
        assert h.search_transcripts('"ask" country* (', 10)[0].video_id == old.video_id
        with pytest.raises(QueryError):
            h.search_transcripts("  ...  ", 10)


def test_history_refuses_other_model_and_wrong_dim(tmp_path):
    rng = np.random.default_rng(8)
    with LocalHistory(tmp_path, model_id=MODEL, dim=DIM) as h:
        h.add_video(record(rng, "a"))
        with pytest.raises(ModelMismatchError):
            h.add_video(record(rng, "b", model="other/model"))
        with pytest.raises(QueryError, match="dimensions"):
            h.search_frames(np.ones(DIM + 2, np.float32), 3)
    with pytest.raises(ModelMismatchError, match="SLUDGE_DATA_DIR"):
        LocalHistory(tmp_path, model_id="other/model", dim=DIM)


def test_snapshot_is_used_and_caught_up(tmp_path):
    rng = np.random.default_rng(9)
    with LocalHistory(tmp_path, model_id=MODEL, dim=DIM) as h:
        h.add_video(record(rng, "a"))
    assert (tmp_path / "frames.faiss").exists()
    # Another writer adds without closing cleanly (no new snapshot): readers catch up from SQLite.
    h2 = LocalHistory(tmp_path, model_id=MODEL, dim=DIM)
    late = record(rng, "b")
    h2.add_video(late)
    h2.conn.close()
    with LocalHistory(tmp_path, model_id=MODEL, dim=DIM) as h3:
        assert h3.search_frames(late.frames[1].embedding, 1)[0].frame_id == late.frames[1].frame_id
        assert h3._vectors.ntotal == 8


def test_stale_or_damaged_snapshot_rebuilds(tmp_path):
    rng = np.random.default_rng(10)
    with LocalHistory(tmp_path, model_id=MODEL, dim=DIM) as h:
        r = record(rng, "a")
        h.add_video(r)
    (tmp_path / "frames.faiss").write_bytes(b"garbage")
    with LocalHistory(tmp_path, model_id=MODEL, dim=DIM) as h:
        assert h.search_frames(r.frames[0].embedding, 1)[0].frame_id == r.frames[0].frame_id


CRASH_WRITER = textwrap.dedent(
    """
    import sys, time, numpy as np
    sys.path.insert(0, {tests!r})
    from test_local_stores import record
    from search.local.history import LocalHistory
    rng = np.random.default_rng(0)
    h = LocalHistory({path!r}, model_id="test/model", dim=512)
    i = 0
    print("ready", flush=True)
    while True:
        h.add_video(record(rng, "v%06d" % i, n_frames=300, dim=512))
        i += 1
    """
)


@pytest.mark.parametrize("delay", [0.4, 0.9, 1.7])
def test_kill_mid_write_leaves_complete_videos_only(tmp_path, delay):
    """SIGKILL a writer in the middle of a stream of large videos: each is absent or whole."""
    tests = os.path.dirname(__file__)
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER.format(tests=tests, path=str(tmp_path))],
        stdout=subprocess.PIPE, cwd=os.path.dirname(tests),
    )
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with LocalHistory(tmp_path, model_id="test/model", dim=512) as h:
        stats = h.stats()
        assert stats["videos"] >= 1
        assert h.check_consistency() == []
        assert stats["frames"] == 300 * stats["videos"]
        rng = np.random.default_rng(0)
        first = record(rng, "v000000", n_frames=300, dim=512)
        assert h.search_frames(first.frames[7].embedding, 1)[0].frame_id == first.frames[7].frame_id


def test_empty_record_is_refused(tmp_path):
    rng = np.random.default_rng(11)
    r = record(rng, "a")
    r.frames = []
    with LocalHistory(tmp_path) as h, pytest.raises(StoreError, match="no frames"):
        h.add_video(r)


def test_a_bank_made_before_retraction_is_migrated_in_place(tmp_path):
    """Labels of a bank whose labels table only admitted confirm/dismiss survive; retract then works."""
    import sqlite3

    from search.types import Label

    with LocalBank(tmp_path / "bank") as b:
        b.create_policy(Policy("p", 0.25))
        b.add_label(Label("p", "a" * 64, "confirm", "r1"))
    db = sqlite3.connect(tmp_path / "bank" / "bank.sqlite3")
    (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'labels'").fetchone()
    db.executescript(  # the table as older versions made it
        "DROP TRIGGER labels_no_update; ALTER TABLE labels RENAME TO l0; "
        + sql.replace(", 'retract'", "") + "; INSERT INTO labels SELECT * FROM l0; DROP TABLE l0;")
    db.close()
    with LocalBank(tmp_path / "bank") as b:
        assert [lab.verdict for lab in b.labels()] == ["confirm"]
        b.add_label(Label("p", "a" * 64, "retract", "r1"))
        assert b.latest_labels("p") == []
        with pytest.raises(Exception, match="append-only"):  # the trigger came back with the table
            b.conn.execute("UPDATE labels SET note = 'x'")
