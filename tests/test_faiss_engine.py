"""faiss over exported embeddings (``sludge recall --engine faiss|faiss-ivf``) against the stores' own search."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import ffmpeg
from test_history_conformance import DIM, corpus, open_history, unit  # noqa: F401 - fixtures

from indexer.errors import QueryError
from search.faiss_engine import FaissEngine, auto_nlist
from search.history import HistoryFilter


def _exact(recs, q, k):
    ids = [f.frame_id for r in recs for f in r.frames]
    x = np.stack([f.embedding for r in recs for f in r.frames])
    s = x @ q
    order = np.argsort(-s, kind="stable")[:k]
    return [ids[i] for i in order], s[order]


def test_export_and_exact_engine_agree_with_the_store(open_history, corpus):  # noqa: F811
    centres, recs = corpus
    h = open_history()
    h.add_videos(recs)
    h.refresh()
    pages = list(h.export_frames(page_size=7))
    assert [len(p) for p in pages][:2] == [7, 7] and sum(len(p) for p in pages) == 20
    got = {fid: (vid, ts, v) for p in pages for fid, vid, ts, v in zip(p.frame_ids, p.video_ids, p.ts, p.vectors)}
    for r in recs:
        for f in r.frames:
            vid, ts, v = got[f.frame_id]
            assert vid == r.video_id and ts == f.ts and np.allclose(v, f.embedding, atol=1e-6)
    vertical = HistoryFilter(layouts=("vertical",))
    assert {vid for p in h.export_frames(vertical) for vid in p.video_ids} == {recs[0].video_id, recs[1].video_id}

    engine = FaissEngine.from_history(h, gpu=False)
    assert engine.ntotal == 20 and engine.device == "cpu"
    exact = h.__class__.__name__ == "LocalHistory"  # Elasticsearch's int8 HNSW is close, not identical
    for q in list(centres) + [unit(np.ones(DIM))]:
        hits = engine.search_frames(q, 10)
        want_ids, want_scores = _exact(recs, q, 10)
        assert [x.frame_id for x in hits] == want_ids
        assert np.allclose([x.score for x in hits], want_scores, atol=1e-5)
        if exact:
            store = h.search_frames(q, 10)
            assert [x.frame_id for x in store] == [x.frame_id for x in hits]
        a = h.recall(q, limit=3, frames_per_video=2)
        b = h.recall(q, limit=3, frames_per_video=2, search=engine.search_frames)
        assert b[0].score == pytest.approx(float(want_scores[0]), abs=1e-5)
        if exact:  # (Elasticsearch's int8 HNSW is approximate: near-ties swap there)
            assert [x.video_id for x in a] == [x.video_id for x in b]
            assert np.allclose([x.score for x in a], [x.score for x in b], atol=1e-5)
            assert all(x.snippet == y.snippet and x.path == y.path for x, y in zip(a, b))
    # hybrid: the transcript narrows the faiss search to its videos
    hybrid = h.recall(centres[1], limit=5, transcript="gameplay", search=engine.search_frames)
    assert {x.video_id for x in hybrid} == {recs[0].video_id, recs[1].video_id}
    # a filtered export answers that filter, and refuses another
    fv = FaissEngine.from_history(h, where=vertical, gpu=False)
    assert {x.video_id for x in fv.search_frames(centres[2], 20, where=vertical)} == {recs[0].video_id,
                                                                                       recs[1].video_id}
    with pytest.raises(QueryError, match="filter"):
        fv.search_frames(centres[2], 5)


def test_ivf_is_close_to_exact():
    rng = np.random.default_rng(0)
    n, dim = 6000, 64
    centres = unit(rng.standard_normal((200, dim)))
    x = unit(centres[rng.integers(0, 200, n)] + 0.08 * rng.standard_normal((n, dim)))
    ids = [f"f{i}" for i in range(n)]
    vids = [f"v{i // 4}" for i in range(n)]
    ts = np.arange(n, dtype=np.float64)
    flat = FaissEngine(x, ids, vids, ts, kind="flat", gpu=False)
    ivf = FaissEngine(x, ids, vids, ts, kind="ivf", nprobe=8, gpu=False)
    assert ivf.nlist == auto_nlist(n) == min(round(4 * n**0.5), n // 39)
    queries = unit(centres[:50] + 0.08 * rng.standard_normal((50, dim)))
    overlap = []
    for q, approx in zip(queries, ivf.search_many(queries, 10)):
        truth = {h.frame_id: h.score for h in flat.search_frames(q, 10)}
        exact_all = dict(zip(ids, x @ q))
        for h in approx:  # IVF-Flat scores are exact inner products of the frames it found
            assert h.score == pytest.approx(float(exact_all[h.frame_id]), abs=1e-5)
        overlap.append(len(truth.keys() & {h.frame_id for h in approx}) / 10)
    assert np.mean(overlap) >= 0.9
    everything = FaissEngine(x, ids, vids, ts, kind="ivf", nprobe=10_000, gpu=False)  # all lists: exact
    assert [h.frame_id for h in everything.search_frames(queries[0], 10)] == \
        [h.frame_id for h in flat.search_frames(queries[0], 10)]
    assert auto_nlist(10) == 1 and FaissEngine(x[:10], ids[:10], vids[:10], ts[:10], kind="ivf").nlist == 1
    empty = FaissEngine(np.zeros((0, dim), np.float32), [], [], np.zeros(0), kind="ivf")
    assert empty.search_frames(queries[0], 5) == [] and empty.search_many(queries[:2], 5) == [[], []]


# -- the CLI on generated clips -----------------------------------------------------------------


@pytest.fixture
def indexed(cli_env, tmp_path, monkeypatch, clip_a, clip_b, gen_dir):
    from click.testing import CliRunner

    from ops.cli.main import cli

    monkeypatch.setenv("SLUDGE_TRANSCRIBER__ENABLED", "false")
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(clip_a, videos / "a.mp4")
    shutil.copy(clip_b, videos / "b.mkv")
    for i, src in enumerate(("smptebars", "rgbtestsrc", "cellauto")):
        ffmpeg("-f", "lavfi", "-i", f"{src}=size=320x240:rate=25", "-t", "2", "-c:v", "libx264",
               "-preset", "veryfast", "-pix_fmt", "yuv420p", str(videos / f"c{i}.mp4"))

    def run(*args):
        res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        assert res.exit_code == 0, (res.output, res.stderr)
        return res.stdout

    run("index", str(videos), "--sampler", "uniform:6")
    return run


def test_cli_faiss_engines_match_the_default(indexed):
    run = indexed
    for query in ("split-screen gameplay", "a cat"):
        base = json.loads(run("recall", "--query", query, "--format", "json", "--limit", "4"))
        flat = json.loads(run("recall", "--query", query, "--format", "json", "--limit", "4", "--engine", "faiss"))
        assert [h["video_id"] for h in flat] == [h["video_id"] for h in base] and len(base) == 4
        for a, b in zip(base, flat):
            assert a["score"] == pytest.approx(b["score"], abs=1e-4) and a["timestamps"] == b["timestamps"]
            assert b["engine"] == "faiss"
        ivf = json.loads(run("recall", "--query", query, "--format", "json", "--limit", "4",
                             "--engine", "faiss-ivf", "--nprobe", "1"))
        assert {h["video_id"] for h in ivf} <= {h["video_id"] for h in
                                                json.loads(run("recall", "--query", query, "--format", "json",
                                                               "--limit", "100"))}
        assert len({h["video_id"] for h in ivf} & {h["video_id"] for h in base}) >= 3


def test_cli_batch_queries(indexed, tmp_path):
    run = indexed
    qf = tmp_path / "queries.txt"
    qf.write_text("split-screen gameplay\n\na cat\n")
    batch = json.loads(run("recall", "--queries-file", str(qf), "--engine", "faiss", "--format", "json",
                           "--limit", "3"))
    assert [b["query"] for b in batch] == ["split-screen gameplay", "a cat"]
    for b in batch:
        one = json.loads(run("recall", "--query", b["query"], "--format", "json", "--limit", "3"))
        assert [h["video_id"] for h in b["results"]] == [h["video_id"] for h in one]
    default = json.loads(run("recall", "--queries-file", str(qf), "--format", "json", "--limit", "3"))
    assert [[h["video_id"] for h in b["results"]] for b in default] == \
        [[h["video_id"] for h in b["results"]] for b in batch]
    csv_out = run("recall", "--queries-file", str(qf), "--format", "csv", "--limit", "2").splitlines()
    assert csv_out[0].startswith("query,rank,video_id") and len(csv_out) == 5
