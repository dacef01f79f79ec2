"""Elasticsearch-only behaviour of the frame history, against a real server: rollover, outbox,
read-only indices, per-document failures, mapping conflicts."""

from __future__ import annotations

import numpy as np
import pytest
from elasticsearch import Elasticsearch
from test_history_conformance import DIM, MODEL, T0, Settings, make_record, unit

from search.elastic.history import ElasticHistory
from search.errors import ModelMismatchError, StoreError


def records(n, seed=0, prefix="v"):
    rng = np.random.default_rng(seed)
    centre = unit(rng.standard_normal(DIM))
    return [make_record(f"{prefix}{i}", centre, rng, uploaded_at=T0 + i) for i in range(n)]


def history(url, prefix, tmp_path, **kw):
    return ElasticHistory(url, Settings(prefix, **kw), model_id=MODEL, dim=DIM, outbox_dir=tmp_path / "outbox")


def test_index_design_template_alias_and_rollover(es_url, es_prefix, tmp_path):
    recs = records(6)
    with history(es_url, es_prefix, tmp_path, rollover_max_docs=8) as h:
        h.add_videos(recs[:3])  # 12 frames in the first index
        assert h.rollover() is True
        h.add_videos(recs[3:])
        assert h.add_videos(recs[:2]) == [False, False]  # idempotent across the rollover
        h.refresh()
        st = h.stats()
        assert st["frames"] == 24 and st["videos"] == 6
        frame_indices = [i for i in st["indices"] if i.startswith(f"{es_prefix}-0")]
        assert frame_indices == [f"{es_prefix}-000001", f"{es_prefix}-000002"]
        # The lifecycle policy that rolls the archive over without the writer, and both indices under it.
        ilm = Elasticsearch(es_url)
        rollover = ilm.ilm.get_lifecycle(name=f"{es_prefix}-frames")[f"{es_prefix}-frames"]["policy"]["phases"][
            "hot"]["actions"]["rollover"]
        assert rollover["max_docs"] == 8 and rollover["max_age"] == "30d"
        explain = ilm.ilm.explain_lifecycle(index=f"{es_prefix}-000002")["indices"][f"{es_prefix}-000002"]
        assert explain["managed"] is True and explain["policy"] == f"{es_prefix}-frames"
        assert st["segments"] >= 2
        hits = h.recall(recs[0].frames[0].embedding, limit=6)
        assert len(hits) == 6 and hits[0].video_id == recs[0].video_id
    es = Elasticsearch(es_url)
    mapping = es.indices.get_mapping(index=f"{es_prefix}-000002").body[f"{es_prefix}-000002"]["mappings"]
    emb = mapping["properties"]["embedding"]
    assert emb["type"] == "dense_vector" and emb["dims"] == DIM and emb["similarity"] == "cosine"
    assert emb["index_options"] == {"type": "int8_hnsw", "m": 16, "ef_construction": 100}
    assert mapping["_meta"]["model_id"] == MODEL
    assert es.indices.get_alias(name=es_prefix).body[f"{es_prefix}-000002"]["aliases"][es_prefix]["is_write_index"]
    es.close()


@pytest.mark.parametrize("threads", [1, 2])
def test_per_document_failures_are_reported_not_dropped(es_url, es_prefix, tmp_path, threads):
    good, bad = records(2, prefix="p")
    bad.frames[2].embedding = np.zeros(DIM, np.float32)  # cosine refuses zero vectors
    # chunks of 3 frames: the failure lands in the middle of several bulk requests, sent from `threads` threads
    with history(es_url, es_prefix, tmp_path, bulk_chunk=3, bulk_threads=threads) as h:
        with pytest.raises(StoreError) as e:
            h.add_videos([good, bad])
        msg = str(e.value)
        assert bad.frames[2].frame_id in msg and "1 video" in msg
        assert h.has_video(good.video_id) and not h.has_video(bad.video_id)  # not marked indexed: redo it
        assert h.pending() == 0


def test_mapping_conflict_and_other_model(es_url, es_prefix, tmp_path):
    es = Elasticsearch(es_url)
    es.indices.create(index=es_prefix, mappings={"properties": {"embedding": {"type": "keyword"}}})
    with pytest.raises(StoreError) as e:
        history(es_url, es_prefix, tmp_path).add_videos(records(1))
    assert es_prefix in str(e.value) and "not a sludge write alias" in str(e.value)
    es.indices.delete(index=es_prefix)
    with history(es_url, es_prefix, tmp_path) as h:
        h.add_videos(records(1))
    other = ElasticHistory(es_url, Settings(es_prefix), model_id="other/model", dim=DIM * 2,
                           outbox_dir=tmp_path / "outbox")
    with pytest.raises(ModelMismatchError) as e:
        other.recall(unit(np.ones(DIM * 2)), limit=1)
    assert MODEL in str(e.value) and "other/model" in str(e.value) and f"{DIM}-d" in str(e.value)
    es.close()


def test_read_only_index_keeps_frames_in_the_outbox(es_url, es_prefix, tmp_path):
    recs = records(3, prefix="r")
    es = Elasticsearch(es_url)
    with history(es_url, es_prefix, tmp_path, retries=1) as h:
        h.add_videos(recs[:1])
        # what the disk flood-stage watermark does to every index
        es.indices.put_settings(index=f"{es_prefix}-*", settings={"index.blocks.read_only_allow_delete": True})
        try:
            assert h.add_videos(recs[1:]) == [True, True]
            assert h.pending() == 2 and h.has_video(recs[1].video_id)
            assert any("read-only" in n or "read_only" in n or "block" in n for n in h.notices), h.notices
        finally:
            es.indices.put_settings(index=f"{es_prefix}-*", settings={"index.blocks.read_only_allow_delete": None})
        assert h.flush_pending() == 2 and h.pending() == 0
        h.refresh()
        assert h.stats()["videos"] == 3 and h.stats()["frames"] == 12
    es.close()


def test_server_stopped_mid_batch_loses_nothing(es_server, es_prefix, tmp_path):
    if not es_server.restartable():
        pytest.skip("SLUDGE_TEST_ES_URL points at a server these tests do not control")
    recs = records(10, prefix="o")
    h = history(es_server.url, es_prefix, tmp_path, retries=1, request_timeout_s=5)
    try:
        for r in recs[:4]:
            assert h.add_video(r)
        es_server.stop()
        for r in recs[4:]:
            assert h.add_video(r)  # accepted: kept in the outbox
        assert h.pending() == 6
        assert all(h.has_video(r.video_id) for r in recs[4:])  # a re-run of the batch adds nothing twice
        assert h.add_video(recs[5]) is False
        assert h.add_video(recs[1]) is True  # stored, but unknowable while down: queued again, deduplicated
        assert h.pending() == 7
        with pytest.raises(StoreError) as e:
            h.recall(recs[0].frames[0].embedding, limit=3)
        assert "unreachable" in str(e.value)
    finally:
        es_server.start()
    assert h.flush_pending() == 6 and h.pending() == 0  # recs[1] was found stored and dropped from the outbox
    h.refresh()
    st = h.stats()
    assert st["videos"] == 10 and st["frames"] == 40
    ids = {x.video_id for x in h.recall(recs[0].frames[0].embedding, limit=10)}
    assert ids == {r.video_id for r in recs}
    h.close()


def test_knn_is_reranked_by_exact_cosine(es_url, es_prefix, tmp_path):
    """int8_hnsw ranks by quantized vectors; the oversampled rescore restores exact scores and order."""
    recs = records(30, seed=3)  # 120 frames in one tight cluster: quantization blurs their order
    vecs = np.stack([f.embedding for r in recs for f in r.frames])
    ids = [f.frame_id for r in recs for f in r.frames]
    q = unit(vecs[7] + 0.02 * np.random.default_rng(9).standard_normal(DIM))
    exact = vecs @ q
    order = np.argsort(-exact)[:10]
    with history(es_url, es_prefix, tmp_path) as h:  # the default window (3 × k): exact scores
        h.add_videos(recs)
        h.refresh()
        hits = h.search_frames(q, 10, num_candidates=100)
        assert np.allclose([x.score for x in hits], exact[[ids.index(x.frame_id) for x in hits]], atol=1e-5)
    with history(es_url, es_prefix, tmp_path, rescore_oversample=10.0) as h:  # a window of 100: exact order
        hits = h.search_frames(q, 10, num_candidates=100)
        assert [x.frame_id for x in hits] == [ids[i] for i in order]
        assert np.allclose([x.score for x in hits], exact[order], atol=1e-5)
    with history(es_url, es_prefix, tmp_path, rescore_oversample=0.0) as h:  # without: quantized scores
        raw = h.search_frames(q, 10, num_candidates=100)
        assert not np.allclose([x.score for x in raw], exact[order], atol=1e-5)
