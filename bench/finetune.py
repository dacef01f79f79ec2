"""Contrastive fine-tuning throughput: training pairs per second, by phase, per model.

Runs ``indexer.encoders.finetune.finetune`` itself (the loop `sludge encoder finetune` runs) on
generated pictures and texts, so the figure includes batching, the optimizer step and validation
overheads, and excludes decoding (pictures are decoded once before training in both cases). The
first phase (image tower frozen, the seed's schedule) and the joint phase are reported side by
side, with the CPU or GPU named. Random weights cost exactly what pretrained ones do.
Last line of output: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="sludge-tiny", help="comma-separated open_clip architectures")
    ap.add_argument("--pairs", type=int, default=512, help="training pairs (each its own text)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3, help="1 frozen-image epoch, then joint")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    from PIL import Image

    from indexer.encoders.finetune import FinetuneConfig, finetune
    from indexer.encoders.openclip import OpenClipEncoder
    from indexer.encoders.pairs import Pair

    rng = np.random.default_rng(0)
    pictures, pairs = {}, []
    for i in range(args.pairs + 64):
        pictures[f"id:{i}"] = Image.fromarray(rng.integers(0, 255, (360, 640, 3), dtype=np.uint8))
        pairs.append(Pair(text=f"generated picture number {i} with {rng.integers(2, 5)} feeds", image_id=str(i),
                          split="train" if i < args.pairs else "val"))
    train = [p for p in pairs if p.split == "train"]
    val = [p for p in pairs if p.split == "val"]
    results = {}
    for name in args.models.split(","):
        enc = OpenClipEncoder(name, None, random_weights=True, device=args.device, threads=args.threads)
        cfg = FinetuneConfig(epochs=args.epochs, frozen_image_epochs=1, batch_size=args.batch_size, patience=args.epochs)
        with tempfile.TemporaryDirectory() as d:
            res = finetune(enc, train, val, pictures, Path(d) / "out", cfg)
        text = [h.pairs_per_s for h in res.history if h.phase == "text"]
        joint = [h.pairs_per_s for h in res.history if h.phase == "joint"]
        params = sum(p.numel() for p in enc.model.parameters())
        results[name] = {"params_m": round(params / 1e6, 2),
                         "pairs_per_s_text_phase": round(float(np.median(text)), 1),
                         "pairs_per_s_joint_phase": round(float(np.median(joint)), 1),
                         "joint_over_text": round(float(np.median(joint) / np.median(text)), 2),
                         "overall_pairs_per_s": round(res.pairs_per_s, 1)}
        print(f"{name:<14} {params / 1e6:6.1f} M params: text phase {results[name]['pairs_per_s_text_phase']:>7} "
              f"pairs/s, joint {results[name]['pairs_per_s_joint_phase']:>7} pairs/s "
              f"(x{results[name]['joint_over_text']}), overall {results[name]['overall_pairs_per_s']} "
              f"(batch {args.batch_size}, {args.device})")
    print(json.dumps({"benchmark": "finetune", "batch_size": args.batch_size, "pairs": args.pairs,
                      "device": args.device, "models": results, "machine": machine_info()}))


if __name__ == "__main__":
    main()
