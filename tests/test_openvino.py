"""OpenVINO runtime of the open_clip encoder: agreement with PyTorch on real frames.

The ViT-B-32 architecture with seeded RANDOM weights (no hub here); the
conversion path is the same as for pretrained weights.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")

from conftest import SHARED_MEDIA  # noqa: E402

QUERIES = ["split-screen gameplay", "a dog on a sofa", "a person juggling", "coffee cup", "cars on a road"]


@pytest.fixture(scope="module")
def frames():
    if not SHARED_MEDIA.is_dir():
        pytest.skip("shared media not present")
    from indexer.sampling import UniformSampler
    from indexer.video import VideoReader

    out = []
    for p in sorted((SHARED_MEDIA / "video" / "real").glob("*.mp4"))[:12]:
        with VideoReader(p) as r:
            out += [f.image for f in UniformSampler(4).sample(r)]
    return out[:40]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ov")


def topk(q, m, k=10):
    return [list(np.argsort(-(m @ v))[:k]) for v in q]


# What each runtime promises on any CPU, by the arithmetic it ends up using (the CPU decides only for fp16:
# f16 where it computes f16 natively, f32 elsewhere): (mean cosine to PyTorch, shared top-10 neighbours).
PROMISES = {("fp32", "f32"): (0.9999, 10), ("fp16", "f32"): (0.999, 9), ("fp16", "f16"): (0.995, 8),
            ("int8", "f32"): (0.99, 8)}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_agrees_with_pytorch(encoder, frames, cache, precision):
    from indexer.encoders.openvino import OpenVinoClipEncoder

    ov = OpenVinoClipEncoder(encoder, precision=precision, cache_dir=cache, calibration_images=frames[:8])
    # The arithmetic is what the runtime set, not the CPU's default (bf16 on AMX machines).
    assert (precision, ov.inference_precision) in PROMISES, (precision, ov.inference_precision)
    assert ov.text_inference_precision == "f32"
    floor, shared = PROMISES[(precision, ov.inference_precision)]
    ref, got = encoder.embed_images(frames[8:]), ov.embed_images(frames[8:])
    cos = (ref * got).sum(1)
    assert cos.mean() >= floor, cos
    assert ov.model_id == encoder.model_id and ov.dim == encoder.dim
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    # the same top-10 results for a set of text and image queries
    tq_ref, tq = encoder.embed_texts(QUERIES), ov.embed_texts(QUERIES)
    assert (tq_ref * tq).sum(1).min() >= 0.9999  # the text tower computes in f32 everywhere
    for q_ref, q in [(tq_ref, tq), (ref[:5], got[:5])]:
        for a, b in zip(topk(q_ref, ref), topk(q, got)):
            assert len(set(a) & set(b)) >= shared
    assert "OpenVINO" in ov.describe() and f"{ov.inference_precision} arithmetic" in ov.describe()


def test_ir_is_cached_and_reused(encoder, frames, cache):
    import time

    from indexer.encoders.openvino import OpenVinoClipEncoder

    first = OpenVinoClipEncoder(encoder, precision="fp32", cache_dir=cache)
    assert (first.cache_dir / "image.xml").exists() and (first.cache_dir / "text.xml").exists()
    t = time.perf_counter()
    again = OpenVinoClipEncoder(encoder, precision="fp32", cache_dir=cache)
    assert time.perf_counter() - t < 30
    assert again.cache_dir == first.cache_dir
    assert "ov" in first.cache_dir.name and "fp32" in first.cache_dir.name


def test_int8_needs_calibration(encoder, tmp_path):
    from indexer.encoders.openvino import OpenVinoClipEncoder
    from indexer.errors import EncoderError

    with pytest.raises(EncoderError, match="calibration"):
        OpenVinoClipEncoder(encoder, precision="int8", cache_dir=tmp_path)


def test_unknown_precision(encoder, tmp_path):
    from indexer.encoders.openvino import OpenVinoClipEncoder
    from indexer.errors import ConfigError

    with pytest.raises(ConfigError, match="precision"):
        OpenVinoClipEncoder(encoder, precision="int4", cache_dir=tmp_path)
