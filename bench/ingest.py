"""End-to-end ingest on the shared media: videos per minute, frames per second, time per stage.

Runs the same videos through both pipelines, side by side in one run (the
machine is shared, so compare within a run): the **sequential** one (decode →
encode → PDQ → transcribe → store, one video after the other) and the
**overlapped** one (indexer.overlap: the stages in their own threads, joined by
bounded queues), each into a fresh embedded history, with Whisper tiny.en and
the ViT-B-32 architecture (random weights: same cost as pretrained). Stage
seconds of the overlapped run are busy time summed over its threads, so their
shares of the wall time may add up to more than 1. Last line of output: one
JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import machine_info  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
STAGES = ("hash", "decode", "layout", "encode", "pdq", "transcribe", "store")


def run_sequential(indexer, paths, history) -> tuple[list, int]:
    from indexer.errors import MediaError

    records, failed = [], 0
    for p in paths:
        try:
            rec = indexer.process(p)
        except MediaError as e:
            failed += 1
            print(f"skip {p.name}: {e.reason}")
            continue
        t = time.perf_counter()
        history.add_video(rec)
        rec.timings["store"] = time.perf_counter() - t
        records.append(rec)
    return records, failed


def run_overlapped(indexer, paths, history, config) -> tuple[list, int]:
    from indexer.overlap import OverlappedIndexer

    records, failed = [], 0
    for r in OverlappedIndexer(indexer, config, store=history.add_video).run(paths):
        if r.status == "failed":
            failed += 1
            print(f"skip {Path(r.job.path).name}: {getattr(r.error, 'reason', r.error)}")
        else:
            records.append(r.record)
    return records, failed


def figures(name: str, records: list, failed: int, wall: float) -> dict:
    stages = {k: 0.0 for k in STAGES}
    for rec in records:
        for k, v in rec.timings.items():
            stages[k] = stages.get(k, 0.0) + v
    videos, frames = len(records), sum(len(r.frames) for r in records)
    out = {
        "pipeline": name,
        "videos": videos,
        "failed": failed,
        "frames": frames,
        "media_seconds": round(sum(r.duration for r in records), 1),
        "wall_seconds": round(wall, 2),
        "videos_per_minute": round(60 * videos / wall, 2) if wall else None,
        "frames_per_second": round(frames / wall, 2) if wall else None,
        "seconds_per_stage": {k: round(v, 2) for k, v in stages.items()},
        "share_per_stage": {k: round(v / wall, 3) for k, v in stages.items()} if wall else {},
    }
    print(f"{name}: {videos} videos ({failed} failed), {frames} frames in {wall:.1f} s: "
          f"{out['videos_per_minute']} videos/min, {out['frames_per_second']} frames/s")
    for k, v in stages.items():
        print(f"  {k:<10} {v:7.2f} s  ({100 * v / wall:5.1f}% of wall)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sampler", default="uniform:4")
    ap.add_argument("--limit", type=int, default=0, help="at most this many videos (0: all)")
    ap.add_argument("--no-transcribe", action="store_true")
    ap.add_argument("--pipelines", default="sequential,overlapped", help="which to run, in this order")
    ap.add_argument("--decode-threads", type=int, default=2)
    ap.add_argument("--transcribe-threads", type=int, default=1)
    ap.add_argument("--queue-size", type=int, default=4)
    ap.add_argument("paths", nargs="*", help="videos (default: ../shared/media/video)")
    args = ap.parse_args()

    import numpy as np

    from indexer.encoders.openclip import OpenClipEncoder
    from indexer.overlap import OverlapConfig
    from indexer.pipeline import VideoIndexer
    from indexer.sampling import parse_sampler
    from indexer.transcribe import load_transcriber
    from search.local.history import LocalHistory

    paths = [Path(p) for p in args.paths] or sorted(
        p for p in (MEDIA / "video").glob("*/*") if p.suffix.lower() in {".mp4", ".mkv", ".mov", ".webm", ".avi", ".gif"}
    )
    if args.limit:
        paths = paths[: args.limit]
    if not paths:
        sys.exit(f"no videos: give paths or provide {MEDIA}")
    enc = OpenClipEncoder("ViT-B-32", None, random_weights=True)
    transcriber = None
    if not args.no_transcribe:
        transcriber = load_transcriber("faster-whisper", "tiny.en")
        transcriber.load()
    indexer = VideoIndexer(enc, parse_sampler(args.sampler), transcriber)
    config = OverlapConfig(decode_threads=args.decode_threads, transcribe_threads=args.transcribe_threads,
                           queue_size=args.queue_size)
    enc.embed_images([np.zeros((224, 224, 3), np.uint8)])  # warm-up outside the timings
    result: dict = {
        "bench": "ingest",
        "machine": machine_info(),
        "sampler": args.sampler,
        "transcribe": not args.no_transcribe,
        "overlap_config": {"decode_threads": config.decode_threads,
                           "transcribe_threads": config.transcribe_threads, "queue_size": config.queue_size},
    }
    for name in args.pipelines.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            history = LocalHistory(tmp, model_id=enc.model_id, dim=enc.dim)
            t0 = time.perf_counter()
            if name == "sequential":
                records, failed = run_sequential(indexer, paths, history)
            elif name == "overlapped":
                records, failed = run_overlapped(indexer, paths, history, config)
            else:
                sys.exit(f"unknown pipeline {name!r}: sequential or overlapped")
            wall = time.perf_counter() - t0
            history.close()
        result[name] = figures(name, records, failed, wall)
    if "sequential" in result and "overlapped" in result and result["sequential"]["wall_seconds"]:
        result["overlapped_speedup"] = round(result["sequential"]["wall_seconds"] /
                                             max(result["overlapped"]["wall_seconds"], 1e-9), 2)
        print(f"overlapped vs sequential: x{result['overlapped_speedup']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
