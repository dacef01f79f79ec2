"""Historical recall before and after fine-tuning: precision@K of multi-feed videos for sludge queries.

What `sludge recall --query "split-screen gameplay"` answers, measured instead of eyeballed: every
video of a generated set (built by `sludge eval build-layout-set`, ideally from the held-out pool of
clips) is represented by its frames, a video scores its best frame, and for each query the top K
videos are checked against the set's ground truth (several feeds or one). Each model named is
measured on the same frames and queries, side by side; intervals are 95 % bootstrap over queries.
Last line of output: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import machine_info  # noqa: E402

#: How moderators ask for stacked-feed sludge (none of these is a caption of the generator's).
QUERIES = (
    "split-screen gameplay",
    "split screen video",
    "two videos stacked on top of each other",
    "gameplay under a video clip",
    "videos side by side",
    "picture in picture",
    "a small video in the corner of another video",
    "a grid of several videos",
    "collage of clips",
    "several feeds on one screen",
    "stacked split-screen with a person talking",
    "side-scrolling game footage under another video",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("set_dir", type=Path)
    ap.add_argument("--model", action="append", default=[],
                    help="ARCH:random[:SEED] or a fine-tuned folder (repeatable; first is the baseline)")
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--k", type=int, nargs="+", default=[5, 10])
    ap.add_argument("--resamples", type=int, default=2000)
    args = ap.parse_args()

    from indexer.encoders.openclip import OpenClipEncoder
    from indexer.encoders.pairs import load_pictures
    from indexer.stats import bootstrap_ci
    from ops.synthetic.pairs import pairs_from_set

    pairs = pairs_from_set(args.set_dir, frames=args.frames)
    truth = {v["name"]: v["label"] != "single_scene"
             for v in json.loads((args.set_dir / "manifest.json").read_text())["videos"]}
    pictures, errors = load_pictures(pairs)
    keys = [p.picture for p in pairs if p.picture in pictures]
    video_of = [Path(p.video).stem for p in pairs if p.picture in pictures]
    videos = sorted(set(video_of))
    vidx = np.array([videos.index(v) for v in video_of])
    multi = np.array([truth[v] for v in videos])
    print(f"{len(videos)} videos ({int(multi.sum())} with several feeds), {len(keys)} frames, "
          f"{len(errors)} unreadable; {len(QUERIES)} queries")
    results = {}
    for spec in args.model or ["sludge-tiny:random"]:
        parts = spec.split(":")
        if len(parts) >= 2 and parts[1] == "random":
            enc = OpenClipEncoder(parts[0], None, random_weights=True, seed=int(parts[2]) if len(parts) > 2 else 0)
        else:
            enc = OpenClipEncoder("ViT-B-32", spec)
        img = enc.embed_images([pictures[k] for k in keys])
        txt = enc.embed_texts(list(QUERIES))
        sim = txt @ img.T  # (queries, frames)
        best = np.full((len(QUERIES), len(videos)), -np.inf)
        for q in range(len(QUERIES)):
            np.maximum.at(best[q], vidx, sim[q])
        order = np.argsort(-best, axis=1)
        row = {"model_id": enc.model_id}
        for k in args.k:
            per_query = multi[order[:, :k]].mean(axis=1)
            ci = bootstrap_ci(len(QUERIES), lambda idx, pq=per_query: {"p": float(pq[idx].mean())},
                              resamples=args.resamples)["p"]
            row[f"precision@{k}"] = round(float(per_query.mean()), 3)
            row[f"precision@{k}_ci95"] = [round(c, 3) for c in ci]
        row["base_rate"] = round(float(multi.mean()), 3)
        results[spec] = row
        print(f"{enc.model_id:<52} " + "  ".join(
            f"P@{k} {row[f'precision@{k}']:.3f} [{row[f'precision@{k}_ci95'][0]:.3f}, {row[f'precision@{k}_ci95'][1]:.3f}]"
            for k in args.k) + f"  (share of multi-feed videos in the set: {row['base_rate']:.3f})")
    print(json.dumps({"benchmark": "encoder_recall", "set": str(args.set_dir), "videos": len(videos),
                      "queries": list(QUERIES), "models": results, "machine": machine_info()}))


if __name__ == "__main__":
    main()
