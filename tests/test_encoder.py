"""open_clip encoder on the real ViT-B-32 architecture with seeded RANDOM weights (no hub here)."""

import numpy as np
import pytest

from indexer.errors import QueryError, WeightsUnavailableError


def test_shapes_norms_and_identity(encoder):
    assert encoder.random_weights and "random" in encoder.model_id and encoder.dim == 512
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in [(120, 200), (400, 90), (64, 64)]]
    e = encoder.embed_images(imgs)
    assert e.shape == (3, 512) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    t = encoder.embed_texts(["split-screen gameplay", "a dog"])
    assert t.shape == (2, 512) and np.allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    # the same content embeds identically, batched or not
    assert np.allclose(encoder.embed_images(imgs[:1])[0], e[0], atol=1e-5)
    assert encoder.embed_images([]).shape == (0, 512)


def test_seeded_random_weights_are_reproducible(encoder):
    from indexer.encoders.openclip import OpenClipEncoder

    other = OpenClipEncoder("ViT-B-32", None, random_weights=True, seed=0)
    assert other.model_id == encoder.model_id
    assert np.allclose(other.embed_texts(["hello"]), encoder.embed_texts(["hello"]), atol=1e-6)
    different = OpenClipEncoder("ViT-B-32", None, random_weights=True, seed=1)
    assert different.model_id != encoder.model_id


def test_empty_text_is_refused(encoder):
    with pytest.raises(QueryError):
        encoder.embed_texts(["  "])


def test_production_never_falls_back_silently(monkeypatch):
    from indexer.encoders.openclip import OpenClipEncoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match="could not be loaded"):
        OpenClipEncoder("ViT-B-32", "laion2b_s34b_b79k")
    with pytest.raises(WeightsUnavailableError, match="neither a file nor a pretrained tag"):
        OpenClipEncoder("ViT-B-32", "no-such-tag")


def test_demo_fallback_is_explicit_and_labelled(monkeypatch):
    from indexer.encoders.openclip import OpenClipEncoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = OpenClipEncoder("ViT-B-32", "laion2b_s34b_b79k", on_missing_weights="random")
    assert enc.random_weights and enc.fallback_reason and "RANDOM" in enc.describe()


def test_local_checkpoint_path_loads_and_is_identified_by_content(tmp_path, encoder):
    import torch

    from indexer.encoders.openclip import OpenClipEncoder

    ckpt = tmp_path / "my_clip.pt"
    torch.save(encoder._model.state_dict(), ckpt)
    loaded = OpenClipEncoder("ViT-B-32", str(ckpt))
    assert not loaded.random_weights
    assert loaded.model_id.startswith("open_clip/ViT-B-32/file:my_clip.pt:")
    assert np.allclose(loaded.embed_texts(["hello"]), encoder.embed_texts(["hello"]), atol=1e-5)
