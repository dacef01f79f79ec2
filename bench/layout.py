"""Layout analysis speed: videos per minute on 30-second 720p videos, beside the decode-only rate.

Builds (once, into --workdir, outside the repository) a few 30 s 720p videos
from the shared media with the project's composite generator: vertical and
horizontal stacks, picture-in-picture, a grid and single feeds, 9:16
(720x1280) and 16:9 (1280x720). Then, video by video and side by side (the
machine is shared, so rates are compared within one run):

- decode-only: every frame decoded by PyAV (no conversion), the cost a
  detector that reads the whole video would start from;
- sampling: the layout detector's own decoding (seek + short runs, scaled);
- layout: ``analyze_layout`` end to end (decode + analysis), one process;
- rules alone: the same without the learned inset scorer (what the scorer costs);
- layout x N: the same over a pool of N worker processes (default: cores).

Last line of output: one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
sys.path.insert(0, str(REPO))


def build_set(workdir: Path, duration: float) -> list[Path]:
    from ops.synthetic.composite import make_composite
    from ops.synthetic.media import find_clips

    clips = find_clips(MEDIA, "dev") + find_clips(MEDIA, "heldout")
    clips = [c for c in clips if c.width >= 640] or clips
    if len(clips) < 4:
        sys.exit(f"need real clips in {MEDIA}")
    plan = [
        ("vertical", 2, (720, 1280)),
        ("horizontal", 2, (1280, 720)),
        ("pip", 2, (1280, 720)),
        ("grid", 4, (720, 1280)),
        ("single", 1, (1280, 720)),
        ("single", 1, (720, 1280)),
    ]
    out = []
    workdir.mkdir(parents=True, exist_ok=True)
    for i, (layout, n, canvas) in enumerate(plan):
        p = workdir / f"{i:02d}_{layout}_{canvas[0]}x{canvas[1]}_{int(duration)}s.mp4"
        if not p.exists():
            feeds = [clips[(i * 3 + k) % len(clips)].path for k in range(n)]
            t = time.perf_counter()
            make_composite(p, layout, feeds=feeds, canvas=canvas, duration=duration, audio=None, crf=23)
            print(f"built {p.name} in {time.perf_counter() - t:.1f} s", flush=True)
        out.append(p)
    return out


def decode_all(path: Path) -> int:
    import av

    n = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for _ in c.decode(s):
            n += 1
    return n


def sample_only(path: Path) -> int:
    from indexer.layout import sample_runs
    from indexer.video import VideoReader

    with VideoReader(path) as r:
        return sum(len(x) for x in sample_runs(r))


def layout_one(path: Path) -> str:
    from indexer.layout import analyze_layout

    return analyze_layout(path).layout


def rules_one(path: Path) -> str:
    """The rules alone (no learned inset scorer): what the scorer costs, side by side."""
    import dataclasses

    from indexer.layout import DEFAULT_PARAMS, analyze_layout

    return analyze_layout(path, dataclasses.replace(DEFAULT_PARAMS, use_scorer=False)).layout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="/tmp/sludge-bench-layout", help="where the test videos are built")
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--repeat", type=int, default=2, help="passes over the set")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()

    videos = build_set(Path(args.workdir), args.duration)
    info = machine_info()
    print("machine:", json.dumps(info))
    times = {"decode_only": 0.0, "sampling": 0.0, "layout": 0.0, "rules": 0.0}
    frames_decoded = frames_sampled = 0
    layouts = {}
    runs = 0
    for _ in range(args.repeat):
        for v in videos:  # interleaved, so load from other users hits every method alike
            t = time.perf_counter()
            frames_decoded += decode_all(v)
            times["decode_only"] += time.perf_counter() - t
            t = time.perf_counter()
            frames_sampled += sample_only(v)
            times["sampling"] += time.perf_counter() - t
            t = time.perf_counter()
            layouts[v.name] = layout_one(v)
            times["layout"] += time.perf_counter() - t
            t = time.perf_counter()
            rules_one(v)
            times["rules"] += time.perf_counter() - t
            runs += 1
    t = time.perf_counter()
    batch = [v for _ in range(args.repeat) for v in videos]
    with ProcessPoolExecutor(args.workers) as ex:
        list(ex.map(layout_one, batch))
    pool_s = time.perf_counter() - t

    def vpm(seconds: float, n: int = runs) -> float:
        return round(60.0 * n / seconds, 1) if seconds > 0 else float("inf")

    result = {
        "benchmark": "layout",
        "videos": len(videos),
        "passes": args.repeat,
        "video_duration_s": args.duration,
        "resolutions": sorted({v.name.split("_")[2] for v in videos}),
        "decode_only_videos_per_min": vpm(times["decode_only"]),
        "decode_only_frames_per_s": round(frames_decoded / times["decode_only"], 1),
        "sampling_videos_per_min": vpm(times["sampling"]),
        "frames_decoded_for_layout_per_video": round(frames_sampled / runs, 1),
        "layout_videos_per_min_1proc": vpm(times["layout"]),
        f"layout_videos_per_min_{args.workers}proc": vpm(pool_s, len(batch)),
        "layout_ms_per_video_1proc": round(1000 * times["layout"] / runs, 1),
        "rules_alone_videos_per_min_1proc": vpm(times["rules"]),
        "scorer_cost_ratio": round(times["layout"] / times["rules"], 2),
        "speedup_vs_decode_only": round(times["decode_only"] / times["layout"], 1),
        "layouts": layouts,
        "machine": info,
    }
    print(f"decode-only (every frame)   : {result['decode_only_videos_per_min']:>8} videos/min "
          f"({result['decode_only_frames_per_s']} frames/s)")
    print(f"layout sampling (decode)    : {result['sampling_videos_per_min']:>8} videos/min "
          f"({result['frames_decoded_for_layout_per_video']} frames kept per video)")
    print(f"layout, 1 process           : {result['layout_videos_per_min_1proc']:>8} videos/min "
          f"({result['layout_ms_per_video_1proc']} ms/video)")
    print(f"rules alone, 1 process      : {result['rules_alone_videos_per_min_1proc']:>8} videos/min "
          f"(with the scorer: x{result['scorer_cost_ratio']} the time)")
    print(f"layout, {args.workers} processes         : {result[f'layout_videos_per_min_{args.workers}proc']:>8} "
          "videos/min")
    print(f"layouts: {layouts}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
