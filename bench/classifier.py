"""The confirm model's cost per frame, and what Q-Former pooling loses.

1. The tiny configuration (real BLIP-2/Qwen3 configs, RANDOM weights, real
   Qwen3 tokenizer) on CPU: seconds per frame for the Q-Former features, for
   the language model's answer (greedy, 8 tokens) and end to end, at batch 1
   and 8; peak resident memory. Tiny figures show the machinery's overheads,
   not production cost: compare ratios (batch 8 vs 1, cached vs not).
2. Where CUDA is present: the FULL-SIZE architecture (EVA ViT-g/14 + Q-Former
   of Salesforce/blip2-opt-2.7b, linear 768 → 2560, Qwen3-4B with LoRA r 32)
   with random weights in bf16, per frame at batch 1 and 8, peak GPU memory.
   Random weights cost exactly what pretrained ones do.
3. The Q-Former index encoder (tiny): recall@10 of the one-vector rankings
   (mean of the 32 query embeddings; the best single probe query) against
   BLIP-2's own max-over-queries ranking.

Last line of output: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from machine import machine_info  # noqa: E402


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    """Composite-like frames: two unrelated halves (the generator's look, without ffmpeg)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = np.empty((640, 360, 3), np.uint8)
        img[:320] = rng.integers(0, 255, 3)
        img[320:] = rng.integers(0, 255, (320, 360, 3))
        out.append(img)
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def per_frame(fn, n_frames: int, repeats: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / (repeats * n_frames)


def bench_tiny(repeats: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    from classifier.load import load_components
    from classifier.tiny import build_tiny_base
    from classifier.train import LORA_TARGETS

    rss0 = peak_rss_mb()
    with tempfile.TemporaryDirectory() as d:
        parts = build_tiny_base(Path(d))
        m = load_components(parts["blip2"], parts["projector"], parts["qwen"], device="cpu")
    m.lm = get_peft_model(m.lm, LoraConfig(r=32, lora_alpha=64, lora_dropout=0.1, target_modules=LORA_TARGETS))
    m.lm.eval()
    out: dict = {"config": "tiny (random weights)", "device": "cpu", "threads": torch.get_num_threads()}
    tr = "subway surfers gameplay under a family guy clip " * 4
    for b in (1, 8):
        ims = frames(b, seed=b)
        m.batch_size = b
        q = per_frame(lambda: m.qformer_features(ims, use_cache=False), b, repeats)
        feats = m.qformer_features(ims, use_cache=False)
        g = per_frame(lambda: m.generate(feats, [tr] * b), b, repeats)
        e2e = per_frame(lambda: m.classify_batch([("x", ims, list(range(b)), tr)]), b, repeats)  # cached features
        m.cache = type(m.cache)()
        cold = per_frame(lambda: (m.cache.__init__(), m.classify_batch([("x", ims, list(range(b)), tr)])), b, repeats)
        out[f"batch{b}"] = {"qformer_s_per_frame": round(q, 5), "lm_answer_s_per_frame": round(g, 5),
                            "end_to_end_s_per_frame": round(cold, 5), "end_to_end_cached_s_per_frame": round(e2e, 5)}
    out["ratio_batch8_vs_1_end_to_end"] = round(out["batch8"]["end_to_end_s_per_frame"]
                                                / out["batch1"]["end_to_end_s_per_frame"], 3)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    out["peak_rss_growth_mb"] = round(peak_rss_mb() - rss0, 1)
    return out


def full_size_configs():
    from transformers import Blip2Config, Qwen3Config

    qwen = Qwen3Config(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                       num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                       tie_word_embeddings=True, rope_theta=1_000_000.0)
    blip = Blip2Config(vision_config={"hidden_size": 1408, "intermediate_size": 6144, "num_hidden_layers": 39,
                                      "num_attention_heads": 16, "image_size": 224, "patch_size": 14,
                                      "initializer_range": 0.02},
                       qformer_config={"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                                       "intermediate_size": 3072, "encoder_hidden_size": 1408},
                       num_query_tokens=32)
    return blip, qwen


def bench_gpu(repeats: int) -> dict:
    """Full-size architecture, random weights, bf16 on CUDA (the production shape and dtype)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from torch import nn
    from transformers import AutoTokenizer, Qwen3ForCausalLM

    from classifier.model import VisualQwen
    from classifier.prompt import IMAGE_MARKER
    from classifier.tiny import qwen_tokenizer_dir
    from classifier.train import LORA_TARGETS
    from indexer.encoders.blip2 import Blip2VisionStack

    dev = torch.device("cuda")
    torch.cuda.reset_peak_memory_stats()
    bcfg, qcfg = full_size_configs()
    with dev:
        vision = Blip2VisionStack(bcfg)
        vision.vision_model.to(torch.bfloat16)
        vision.requires_grad_(False).eval()
        torch.set_default_dtype(torch.bfloat16)
        lm = Qwen3ForCausalLM(qcfg)
        torch.set_default_dtype(torch.float32)
        proj = nn.Linear(768, 2560)
    lm = get_peft_model(lm, LoraConfig(r=32, lora_alpha=64, lora_dropout=0.1, target_modules=LORA_TARGETS)).eval()
    tok = AutoTokenizer.from_pretrained(str(qwen_tokenizer_dir()))
    tok.add_tokens([IMAGE_MARKER], special_tokens=True)
    m = VisualQwen(vision, proj, lm, tok, image_token_id=tok.convert_tokens_to_ids(IMAGE_MARKER), device=dev,
                   dtype=torch.bfloat16, source={"kind": "bench", "id": "full-size random"}, random_weights=True)
    out: dict = {"config": "full-size architecture, random weights, bf16", "gpu": torch.cuda.get_device_name(0),
                 "weights_gb": round(torch.cuda.memory_allocated() / 1e9, 2)}
    tr = "subway surfers gameplay under a family guy clip " * 4

    def timed(fn, b):
        fn()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(repeats):
            fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - t) / (repeats * b)

    for b in (1, 8):
        ims = frames(b, seed=b)
        m.batch_size = b
        torch.cuda.reset_peak_memory_stats()
        q = timed(lambda: m.qformer_features(ims, use_cache=False), b)
        feats = m.qformer_features(ims, use_cache=False)
        g = timed(lambda: m.generate(feats, [tr] * b), b)
        out[f"batch{b}"] = {"qformer_s_per_frame": round(q, 5), "lm_answer_s_per_frame": round(g, 5),
                            "end_to_end_s_per_frame": round(q + g, 5),
                            "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2)}
    return out


def bench_pooling(n_images: int) -> dict:
    from indexer.encoders.qformer import QFormerEncoder, best_probe_query, pooling_recall

    enc = QFormerEncoder("tiny", device="cpu")
    q = enc.query_embeddings(frames(n_images, seed=7))
    texts = [f"{a} {b}" for a in ("split-screen", "gameplay", "cooking", "slime", "news", "a cat", "podcast", "cars")
             for b in ("video", "clip")]
    t = enc.embed_texts(texts)
    k = best_probe_query(q[: len(texts)], t)
    single = q[:, k, :] / np.linalg.norm(q[:, k, :], axis=1, keepdims=True)
    return {"config": "tiny (random weights)", "images": n_images, "texts": len(texts),
            "recall_at_10_mean_vs_max": round(pooling_recall(q, t, enc.pool(q), 10), 3),
            "recall_at_10_probe_query_vs_max": round(pooling_recall(q, t, single, 10), 3), "probe_query": k}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pool-images", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    info = machine_info()
    print("machine:", json.dumps(info))
    result: dict = {"bench": "classifier", "machine": info}
    result["tiny_cpu"] = bench_tiny(args.repeats)
    print("tiny CPU:", json.dumps(result["tiny_cpu"]))
    result["pooling"] = bench_pooling(args.pool_images)
    print("Q-Former pooling:", json.dumps(result["pooling"]))
    import torch

    if torch.cuda.is_available():
        result["full_gpu"] = bench_gpu(args.repeats)
        print("full-size GPU:", json.dumps(result["full_gpu"]))
    else:
        result["full_gpu"] = None
        print("full-size GPU: no CUDA device here; not measured")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
