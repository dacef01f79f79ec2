"""The Q-Former (BLIP-2 ITC) index encoder on the tiny configuration (real config, RANDOM weights).

Checks the machinery (shapes, unit length, determinism, model ids naming the
pooling, configuration), and measures what pooling the 32 query embeddings
into one vector costs against BLIP-2's own max-over-queries score.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")

from indexer.encoders.qformer import (
    QFormerEncoder,
    best_probe_query,
    max_over_queries,
    parse_pooling,
    pooling_recall,
)
from indexer.errors import ConfigError, QueryError


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one torch thread. Their ops are too small to gain from threads, and on a shared
    machine a second spinning thread made them about 5x slower (measured)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def enc() -> QFormerEncoder:
    return QFormerEncoder("tiny", device="cpu", batch_size=8)


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = np.zeros((96, 128, 3), np.uint8)
        img[:] = rng.integers(0, 255, 3)
        y = rng.integers(0, 60)
        img[y : y + 30, :, :] = rng.integers(0, 255, (30, 128, 3))  # a band of noise: frames differ
        out.append(img)
    return out


def test_shapes_norms_determinism_and_id(enc):
    ims = _images(5)
    e = enc.embed_images(ims)
    assert e.shape == (5, enc.dim) and enc.dim == 32 and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    q = enc.query_embeddings(ims)
    assert q.shape == (5, 32, enc.dim) and np.allclose(np.linalg.norm(q, axis=-1), 1, atol=1e-5)
    assert np.allclose(enc.embed_images(ims), e, atol=1e-6)
    t = enc.embed_texts(["split-screen gameplay", "a cat"])
    assert t.shape == (2, enc.dim) and np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)
    assert enc.model_id == "blip2-itc/tiny-random-seed0/mean" and enc.random_weights
    assert "RANDOM" in enc.describe()
    assert enc.embed_images([]).shape == (0, enc.dim)
    with pytest.raises(QueryError):
        enc.embed_texts([" "])
    assert enc.count_tokens("two words") == 4  # [CLS] two words [SEP]


def test_single_query_pooling_and_bad_spec():
    assert parse_pooling("mean") is None and parse_pooling("query:31") == 31
    for bad in ("max", "query:32", "query:x"):
        with pytest.raises(ConfigError):
            parse_pooling(bad)
    e = QFormerEncoder("tiny", pooling="query:3", device="cpu")
    assert e.model_id.endswith("/query:3")
    ims = _images(2)
    q = e.query_embeddings(ims)
    assert np.allclose(e.embed_images(ims), q[:, 3, :], atol=1e-5)


def test_pooling_recall_against_max_over_queries(enc):
    """recall@10 of one-vector rankings against BLIP-2's max-over-queries ranking (tiny, random weights)."""
    ims = _images(60, seed=1)
    q = enc.query_embeddings(ims)
    texts = [f"probe text number {i} about {w}" for i, w in enumerate(["games", "cats", "news", "slime", "cars",
                                                                        "food", "music", "sport"])]
    t = enc.embed_texts(texts)
    assert max_over_queries(q, t).shape == (len(texts), len(ims))
    mean_recall = pooling_recall(q, t, enc.pool(q), k=10)
    k = best_probe_query(q[: len(texts)], t)  # probe pairs: first images with the texts
    single_recall = pooling_recall(q, t, q[:, k, :] / np.linalg.norm(q[:, k, :], axis=1, keepdims=True), k=10)
    assert 0.0 <= mean_recall <= 1.0 and 0.0 <= single_recall <= 1.0
    assert pooling_recall(q, t, q.max(axis=1) * 0 + q[:, 0, :], k=60) == 1.0  # k = all: nothing lost
    print(f"\nrecall@10 vs max-over-queries (tiny, random weights): mean {mean_recall:.3f}, "
          f"probe query {k} {single_recall:.3f}")


def test_app_selects_qformer_backend(monkeypatch, tmp_path):
    from ops.app import App
    from ops.config import load_settings

    monkeypatch.setenv("SLUDGE_ENCODER__BACKEND", "qformer")
    monkeypatch.setenv("SLUDGE_ENCODER__QFORMER_MODEL", "tiny")
    monkeypatch.setenv("SLUDGE_DATA_DIR", str(tmp_path))
    app = App(load_settings())
    assert isinstance(app.encoder, QFormerEncoder) and app.encoder.model_id.startswith("blip2-itc/tiny")
    monkeypatch.setenv("SLUDGE_ENCODER__QFORMER_POOLING", "max")
    with pytest.raises(ConfigError, match="qformer_pooling"):
        load_settings()


def test_index_and_recall_with_qformer_backend_and_no_mixing(monkeypatch, tmp_path, clip_a):
    """Indexing, recall and the store's model record go through the configured encoder."""
    import json

    from click.testing import CliRunner

    from ops.cli.main import cli

    for k in list(__import__("os").environ):
        if k.startswith("SLUDGE_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("SLUDGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SLUDGE_ENCODER__BACKEND", "qformer")
    monkeypatch.setenv("SLUDGE_ENCODER__QFORMER_MODEL", "tiny")
    monkeypatch.setenv("SLUDGE_TRANSCRIBER__ENABLED", "false")
    run = CliRunner()
    r = run.invoke(cli, ["index", str(clip_a), "--json"])
    assert r.exit_code == 0, r.output
    r = run.invoke(cli, ["recall", "--query", "a test pattern", "--format", "json"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout.strip().splitlines()[-1])
    assert hits and hits[0]["path"].endswith("a.mp4")
    monkeypatch.setenv("SLUDGE_ENCODER__QFORMER_POOLING", "query:3")  # another encoder for the same store
    r = run.invoke(cli, ["recall", "--query", "a test pattern", "--format", "json"])
    assert r.exit_code == 1 and "blip2-itc/tiny-random-seed0/mean" in r.output
