"""One conformance suite for every frame history backend: the embedded one and Elasticsearch.

Elasticsearch is a real server (tests/fixtures_es.py), started once per session.
Vectors are clustered so that approximate kNN (int8 HNSW) agrees with exact search.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from indexer.errors import QueryError
from indexer.identity import frame_id
from indexer.records import FrameRecord, Transcript, VideoRecord
from search.errors import ModelMismatchError, NotFoundError
from search.history import NO_DECISION, HistoryFilter
from search.sweeps import run_sweep

DIM = 32
MODEL = "test/model"
DAY = 86400.0
T0 = 1_700_000_000.0


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def make_record(name: str, centre: np.ndarray, rng, *, n_frames=4, transcript="", uploaded_at=T0, layout=None,
                source=None, model=MODEL, spread=0.05) -> VideoRecord:
    vid = (name.encode().hex() * 64)[:64]
    emb = unit(centre + spread * rng.standard_normal((n_frames, centre.shape[0])))
    return VideoRecord(
        video_id=vid, path=f"/videos/{name}.mp4", size_bytes=1000, duration=float(n_frames), width=720,
        height=1280, fps=25.0, has_audio=bool(transcript),
        transcript=Transcript(text=transcript, has_speech=bool(transcript), language="en" if transcript else None),
        sampler=f"uniform:{n_frames}", model_id=model,
        frames=[FrameRecord(frame_id(vid, i + 0.5), vid, i + 0.5, emb[i], pdq="0" * 64, pdq_quality=100)
                for i in range(n_frames)],
        uploaded_at=uploaded_at, indexed_at=time.time(), layout=layout, source=source,
    )


class Settings:
    """ElasticSettings' fields (search must not import ops)."""

    def __init__(self, prefix: str, **kw) -> None:
        self.index_prefix = prefix
        self.index_type = "int8_hnsw"
        self.hnsw_m = 16
        self.hnsw_ef_construction = 100
        self.num_candidates = 100
        self.rescore_oversample = 3.0
        self.shards = 1
        self.replicas = 0
        self.rollover_max_docs = 10_000_000
        self.rollover_max_age = "30d"
        self.bulk_chunk = 500
        self.bulk_threads = 2
        self.request_timeout_s = 30.0
        self.retries = 3
        self.__dict__.update(kw)


@pytest.fixture(params=["local", "es"])
def open_history(request, tmp_path):
    """A factory: open_history(model_id=..., dim=...) on the backend under test."""
    opened = []
    if request.param == "local":
        from search.local.history import LocalHistory

        def factory(model_id=MODEL, dim=DIM, **kw):
            h = LocalHistory(tmp_path / "history", model_id=model_id, dim=dim)
            opened.append(h)
            return h
    else:
        prefix = request.getfixturevalue("es_prefix")
        url = request.getfixturevalue("es_url")
        from search.elastic.history import ElasticHistory

        def factory(model_id=MODEL, dim=DIM, **kw):
            h = ElasticHistory(url, Settings(prefix, **kw), model_id=model_id, dim=dim,
                               outbox_dir=tmp_path / "outbox")
            opened.append(h)
            return h
    factory.backend = request.param
    yield factory
    for h in opened:
        h.close()


@pytest.fixture
def corpus():
    """Three clusters; videos with layouts, sources, transcripts and upload days."""
    rng = np.random.default_rng(7)
    centres = unit(rng.standard_normal((3, DIM)))
    recs = [
        make_record("game1", centres[0], rng, transcript="epic split screen gameplay minecraft parkour",
                    uploaded_at=T0, layout="vertical", source="chan-a"),
        make_record("game2", centres[0], rng, transcript="subway surfers gameplay with a movie clip",
                    uploaded_at=T0 + 1 * DAY, layout="vertical", source="chan-b"),
        make_record("cook1", centres[1], rng, transcript="how to bake bread at home",
                    uploaded_at=T0 + 2 * DAY, layout="single_scene", source="chan-a"),
        make_record("cook2", centres[1], rng, transcript="", uploaded_at=T0 + 3 * DAY, layout="single_scene",
                    source="chan-c"),
        make_record("pip1", centres[2], rng, transcript="call this phone number now",
                    uploaded_at=T0 + 4 * DAY, layout="picture-in-picture", source="chan-b"),
    ]
    return centres, recs


def test_add_is_idempotent_and_videos_round_trip(open_history, corpus):
    centres, recs = corpus
    detail = {"confidence": 0.97, "n_feeds": 2, "multi_feed": True, "regions": [[0, 0, 720, 640], [0, 640, 720, 640]],
              "evidence": {"seam": "horizontal"}}
    recs[0].layout_detail = detail
    h = open_history()
    assert h.add_videos(recs) == [True] * 5
    assert h.add_video(recs[0]) is False
    assert h.has_video(recs[0].video_id) and not h.has_video("f" * 64)
    h.refresh()
    got = h.get_videos([r.video_id for r in recs] + ["0" * 64])
    assert set(got) == {r.video_id for r in recs}
    v = got[recs[0].video_id]
    assert v.path == "/videos/game1.mp4" and v.layout == "vertical" and v.source == "chan-a"
    # the detector's regions come back from every backend (the console draws them for any video)
    assert v.layout_detail == detail and got[recs[1].video_id].layout_detail is None
    assert v.frame_count == 4 and v.uploaded_at == pytest.approx(T0) and "minecraft" in v.transcript
    st = h.stats()
    assert st["videos"] == 5 and st["frames"] == 20 and st["model_ids"] == [MODEL]
    assert st["bytes_on_disk"] > 0


def test_recall_scores_are_cosine_and_grouped(open_history, corpus):
    centres, recs = corpus
    h = open_history()
    h.add_videos(recs)
    probe = recs[0].frames[1].embedding
    hits = h.recall(probe, limit=3, frames_per_video=4)
    assert hits[0].video_id == recs[0].video_id
    assert hits[0].score == pytest.approx(1.0, abs=0.02)  # int8 quantisation on the server
    assert hits[0].timestamps[0] == pytest.approx(1.5)
    assert hits[1].video_id == recs[1].video_id  # same cluster next
    assert all(-1.0 <= s <= 1.0 for hit in hits for s in hit.frame_scores)
    exact = float(np.dot(probe, recs[1].frames[0].embedding))
    frame_scores = dict(zip(hits[1].timestamps, hits[1].frame_scores))
    assert frame_scores[0.5] == pytest.approx(exact, abs=0.02)
    # far cluster: cosine near the true value, possibly negative
    anti = -centres[0]
    worst = h.recall(anti, limit=5, frames_per_video=4)
    assert {x.video_id for x in worst[:2]} != {recs[0].video_id, recs[1].video_id}
    assert min(x.score for x in h.recall(probe, limit=5)) < 0.9
    hits = h.recall(probe, limit=5, min_score=0.9)
    assert {x.video_id for x in hits} == {recs[0].video_id, recs[1].video_id}


def test_filters_inside_the_search(open_history, corpus):
    centres, recs = corpus
    h = open_history()
    h.add_videos(recs)
    probe = centres[0]
    ids = lambda hits: [x.video_id for x in hits]
    only_pip = h.recall(probe, limit=5, where=HistoryFilter(layouts=("picture-in-picture",)))
    assert ids(only_pip) == [recs[4].video_id]
    by_source = h.recall(probe, limit=5, where=HistoryFilter(sources=("chan-a",)))
    assert set(ids(by_source)) == {recs[0].video_id, recs[2].video_id}
    window = h.recall(probe, limit=5, since=T0 + 1 * DAY, until=T0 + 3 * DAY)
    assert set(ids(window)) == {recs[1].video_id, recs[2].video_id}
    both = h.recall(probe, limit=5, where=HistoryFilter(sources=("chan-b",), layouts=("vertical",)))
    assert ids(both) == [recs[1].video_id]
    # decisions: on the video and every frame
    h.set_decision(recs[0].video_id, "removed")
    h.refresh()
    assert h.get_video(recs[0].video_id).decision == "removed"
    removed = h.recall(probe, limit=5, where=HistoryFilter(decisions=("removed",)))
    assert ids(removed) == [recs[0].video_id]
    undecided = h.recall(probe, limit=5, where=HistoryFilter(decisions=(NO_DECISION,)))
    assert recs[0].video_id not in ids(undecided) and len(undecided) == 4
    with pytest.raises(NotFoundError):
        h.set_decision("e" * 64, "removed")


def test_transcripts_and_hybrid(open_history, corpus):
    centres, recs = corpus
    h = open_history()
    h.add_videos(recs)
    t = h.search_transcripts("gameplay", 10)
    assert {x.video_id for x in t} == {recs[0].video_id, recs[1].video_id}
    assert all("gameplay" in x.snippet.lower() for x in t)
    assert [x.video_id for x in h.search_transcripts("minecraft gameplay", 10)] == [recs[0].video_id]
    assert h.search_transcripts("gameplay", 10, where=HistoryFilter(sources=("chan-b",)))[0].video_id == \
        recs[1].video_id
    # hybrid: vector search narrowed to transcript matches, scores stay cosine
    hy = h.recall(centres[1], limit=5, transcript="gameplay")
    assert {x.video_id for x in hy} == {recs[0].video_id, recs[1].video_id}
    assert all(-1 <= x.score <= 1 for x in hy)
    assert h.recall(centres[1], limit=5, transcript="nothing-like-this") == []
    with pytest.raises(QueryError):
        h.search_transcripts("  !! ", 5)


def test_query_errors_and_model_guard(open_history, corpus):
    centres, recs = corpus
    h = open_history()
    h.add_videos(recs[:1])
    with pytest.raises(QueryError):
        h.search_frames(np.ones(DIM + 1, np.float32), 5)
    with pytest.raises(QueryError):
        h.recall(centres[0], limit=0)
    h.close()
    with pytest.raises(ModelMismatchError) as e:
        open_history(model_id="other/model", dim=DIM).add_video(
            make_record("x", centres[0], np.random.default_rng(0), model="other/model"))
    assert "test/model" in str(e.value) and "other/model" in str(e.value)


def test_sweep_records_candidates_resumes_and_is_idempotent(open_history, corpus):
    centres, recs = corpus
    h = open_history()
    h.add_videos(recs)
    probe = centres[0]
    pages = []
    first = run_sweep(h, "gameplay", probe, query="split-screen gameplay", min_score=0.5, page_size=3,
                      max_pages=1, on_page=lambda *a: pages.append(a))
    assert not first.complete and first.pages == 1 and pages == [(1, 3, first.candidates_new)]
    rest = run_sweep(h, "gameplay", probe, query="split-screen gameplay", min_score=0.5, page_size=3)
    assert rest.resumed and rest.complete
    assert first.frames_matched + rest.frames_matched == 8  # the 8 frames of the two gameplay videos
    cands = h.sweep_candidates("gameplay")
    assert [c.video_id for c in cands][:2] and {c.video_id for c in cands} == {recs[0].video_id, recs[1].video_id}
    assert first.candidates_new + rest.candidates_new == 2
    c0 = cands[0]
    assert len(c0.timestamps) == 4 and c0.score == max(c0.frame_scores) and -1 <= c0.score <= 1
    assert c0.path.startswith("/videos/") and c0.query == "split-screen gameplay"
    # re-running the finished sweep scans again and adds nothing twice
    again = run_sweep(h, "gameplay", probe, query="split-screen gameplay", min_score=0.5, page_size=3)
    assert again.complete and not again.resumed and again.candidates_new == 0 and again.frames_matched == 8
    assert len(h.sweep_candidates("gameplay")) == 2
    # a filtered sweep for another policy keeps its own records
    other = run_sweep(h, "pip", probe, query="x", min_score=-1.0, where=HistoryFilter(layouts=("picture-in-picture",)))
    assert other.candidates_new == 1 and len(h.sweep_candidates("pip")) == 1
    # a new upload is picked up by the next run
    h.add_video(make_record("game3", centres[0], np.random.default_rng(3), uploaded_at=T0 + 9 * DAY))
    assert run_sweep(h, "gameplay", probe, query="split-screen gameplay", min_score=0.5).candidates_new == 1


def test_empty_history(open_history):
    h = open_history()
    assert h.recall(unit(np.ones(DIM)), limit=3) == []
    assert h.stats()["videos"] == 0
    assert h.sweep_candidates("nothing") == []
