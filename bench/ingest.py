"""End-to-end ingest on the shared media: videos per minute, frames per second, time per stage.

Runs the sequential pipeline (decode → encode → PDQ → transcribe → store)
into a fresh embedded history, with Whisper tiny.en and the ViT-B-32
architecture (random weights: same cost as pretrained). Last line of output:
one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sampler", default="uniform:4")
    ap.add_argument("--limit", type=int, default=0, help="at most this many videos (0: all)")
    ap.add_argument("--no-transcribe", action="store_true")
    ap.add_argument("paths", nargs="*", help="videos (default: ../shared/media/video)")
    args = ap.parse_args()

    from indexer.encoders.openclip import OpenClipEncoder
    from indexer.errors import MediaError
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
    stages = {"hash": 0.0, "decode": 0.0, "encode": 0.0, "pdq": 0.0, "transcribe": 0.0, "store": 0.0}
    videos = frames = failed = 0
    media_seconds = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        history = LocalHistory(tmp, model_id=enc.model_id, dim=enc.dim)
        t0 = time.perf_counter()
        for p in paths:
            try:
                rec = indexer.process(p)
            except MediaError as e:
                failed += 1
                print(f"skip {p.name}: {e.reason}")
                continue
            t = time.perf_counter()
            history.add_video(rec)
            stages["store"] += time.perf_counter() - t
            for k, v in rec.timings.items():
                stages[k] += v
            videos += 1
            frames += len(rec.frames)
            media_seconds += rec.duration
        wall = time.perf_counter() - t0
        history.close()
    result = {
        "bench": "ingest",
        "pipeline": "sequential",
        "machine": machine_info(),
        "sampler": args.sampler,
        "transcribe": not args.no_transcribe,
        "videos": videos,
        "failed": failed,
        "frames": frames,
        "media_seconds": round(media_seconds, 1),
        "wall_seconds": round(wall, 2),
        "videos_per_minute": round(60 * videos / wall, 2),
        "frames_per_second": round(frames / wall, 2),
        "seconds_per_stage": {k: round(v, 2) for k, v in stages.items()},
        "share_per_stage": {k: round(v / wall, 3) for k, v in stages.items()},
    }
    print(f"{videos} videos ({failed} failed), {frames} frames in {wall:.1f} s: "
          f"{result['videos_per_minute']} videos/min, {result['frames_per_second']} frames/s")
    for k, v in stages.items():
        print(f"  {k:<10} {v:7.2f} s  ({100 * v / wall:4.1f}%)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
