"""Encoder throughput: images per second per backend and precision, at batch 1 and 16.

Backends measured side by side in one run: PyTorch eager (FP32) and OpenVINO
FP32, FP16 and INT8 (NNCF, calibrated on real frames). Each figure comes with
its ratio to PyTorch eager at the same batch, and its share of the machine's
measured FP32 matrix-multiply peak (the model's FLOPs per image are counted
with torch's FlopCounterMode). Random weights cost exactly what pretrained
ones do, so the figures hold for production. Frames come from
../shared/media when present. Last line of output: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
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


def matmul_peak_gflops(seconds: float = 3.0, n: int = 2048) -> float:
    """Best sustained FP32 GEMM rate of this process's threads (torch, which the encoders use)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def image_flops(base) -> float:
    """FLOPs of one image through the vision tower (multiply-add = 2 FLOPs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    s = getattr(base._model.visual, "image_size", 224)
    s = int(s[0] if isinstance(s, (tuple, list)) else s)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        base._model.encode_image(torch.zeros(1, 3, s, s))
    return float(counter.get_total_flops())


def images_per_second(encoder, frames, batch: int, seconds: float) -> float:
    encoder.batch_size = batch
    encoder.embed_images(frames[:batch])  # warm-up
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        start = done % max(1, len(frames) - batch)
        encoder.embed_images(frames[start : start + batch])
        done += batch
    return done / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--seconds", type=float, default=8.0, help="measuring time per configuration")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--backends", default="torch,openvino-fp32,openvino-fp16,openvino-int8")
    ap.add_argument("--cache-dir", default=None, help="OpenVINO IR cache (default: a temporary folder)")
    args = ap.parse_args()

    from indexer.encoders.openclip import OpenClipEncoder

    base = OpenClipEncoder(args.model, None, random_weights=True, threads=args.threads)
    frames = real_frames(48)
    calib, frames = frames[:16], frames[16:]
    peak = matmul_peak_gflops()
    flops = image_flops(base)
    result: dict = {
        "bench": "encode", "machine": machine_info(), "model": args.model,
        "matmul_peak_gflops": round(peak, 1), "gflops_per_image": round(flops / 1e9, 3), "backends": {},
    }
    print(f"FP32 matmul peak {peak:.1f} GFLOP/s; {args.model} image tower {flops / 1e9:.2f} GFLOP/image")
    tmp = tempfile.TemporaryDirectory()
    cache = args.cache_dir or tmp.name
    for name in args.backends.split(","):
        if name == "torch":
            enc = base
        else:
            from indexer.encoders.openvino import OpenVinoClipEncoder

            t = time.perf_counter()
            enc = OpenVinoClipEncoder(base, precision=name.split("-")[1], cache_dir=cache,
                                      calibration_images=calib, threads=args.threads)
            print(f"{name}: built in {time.perf_counter() - t:.1f} s; image tower computes in "
                  f"{enc.inference_precision}, text tower in {enc.text_inference_precision}")
        entry = {"inference_precision": getattr(enc, "inference_precision", "f32 (PyTorch)")}
        for batch in (1, 16):
            ips = images_per_second(enc, frames, batch, args.seconds)
            entry[f"batch{batch}"] = {
                "images_per_s": round(ips, 2),
                "ms_per_image": round(1000 / ips, 1),
                "share_of_peak": round(ips * flops / 1e9 / peak, 3),
            }
        result["backends"][name] = entry
    for name, entry in result["backends"].items():
        for batch in (1, 16):
            e = entry[f"batch{batch}"]
            e["ratio_to_torch"] = round(e["images_per_s"] / result["backends"]["torch"][f"batch{batch}"]["images_per_s"], 2) \
                if "torch" in result["backends"] else None
            print(f"{name:>14} batch {batch:>2}: {e['images_per_s']:7.2f} images/s  {e['ms_per_image']:6.1f} ms/image  "
                  f"x{e['ratio_to_torch']} vs torch  {100 * e['share_of_peak']:4.1f}% of peak")
    tmp.cleanup()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
