"""Encoder throughput: images per second at batch 1 and 16 (open_clip on PyTorch, CPU).

Random weights cost exactly what pretrained ones do, so the figures hold for
production. Frames come from ../shared/media when present, else are generated.
Last line of output: one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"


def real_frames(n: int) -> list[np.ndarray]:
    from indexer.sampling import UniformSampler
    from indexer.video import VideoReader

    frames: list[np.ndarray] = []
    for path in sorted((MEDIA / "video" / "real").glob("*.mp4")):
        try:
            with VideoReader(path) as r:
                frames += [f.image for f in UniformSampler(4).sample(r)]
        except Exception:
            continue
        if len(frames) >= n:
            break
    rng = np.random.default_rng(0)
    while len(frames) < n:
        frames.append(rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8))
    return frames[:n]


def images_per_second(encoder, frames, batch: int, seconds: float) -> float:
    encoder.batch_size = batch
    encoder.embed_images(frames[:batch])  # warm-up
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        encoder.embed_images(frames[(done % len(frames)):][:batch] or frames[:batch])
        done += batch
    return done / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--seconds", type=float, default=8.0, help="measuring time per configuration")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    from indexer.encoders.openclip import OpenClipEncoder

    enc = OpenClipEncoder(args.model, None, random_weights=True, threads=args.threads)
    frames = real_frames(32)
    result = {"bench": "encode", "machine": machine_info(), "model": args.model, "backend": "torch-eager-fp32"}
    for batch in (1, 16):
        ips = images_per_second(enc, frames, batch, args.seconds)
        result[f"images_per_s_batch{batch}"] = round(ips, 2)
        result[f"ms_per_image_batch{batch}"] = round(1000 / ips, 1)
        print(f"batch {batch:>2}: {ips:7.2f} images/s ({1000 / ips:.1f} ms/image)")
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < 2.0:
        enc.embed_texts(["split-screen gameplay under a TV clip"])
        n += 1
    result["texts_per_s_batch1"] = round(n / (time.perf_counter() - t0), 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
