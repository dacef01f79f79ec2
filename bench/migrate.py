"""Migration of the frame history to a new model (``sludge migrate``): frames/s, killed and resumed.

For each backend (the embedded SQLite + faiss history, and Elasticsearch), a history of ``--frames``
frames (``--per-video`` per video, 128-d, model: sludge-tiny with seeded random weights) is written,
then migrated to another model (sludge-tiny, another seed) by a child process running the real
``Migrator``. The parent kills that child with SIGKILL once ``--kill-at`` of the videos are copied,
starts it again (it resumes from the registry's cursor) and waits for the switch, while a query loop
(k-NN searches through a store reopened every few queries, as new processes would) runs the whole
time. Reported: frames/s of the copy (summed over both runs), the copy's wall time, videos lost or
stored twice after the kill (counted in the new generation: stored frames against distinct frame
ids and against the old generation), and the query loop's queries and errors.

What is measured is the store path: reading pages of videos from the old generation, writing them
to the new one, advancing the cursor. The re-embedding itself is a stand-in (vectors derived from
the frame ids, no media): with real media the encoder's rate bounds the migration, and that rate is
``bench/encode.py``'s images/s (plus decoding) for the new model.

    python bench/migrate.py [--frames 100000] [--per-video 25] [--backends embedded,es] [--url URL]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from machine import machine_info  # noqa: E402

DIM = 128


def stand_in(rec, enc):
    """Vectors for a video's frames without media: deterministic per frame id (the store path alone)."""
    seed = int(hashlib.sha256(rec.video_id.encode()).hexdigest()[:8], 16)
    v = np.random.default_rng(seed).standard_normal((len(rec.frames), enc.dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True), "source"


def child(batch: int) -> None:
    from ops.app import App
    from ops.config import load_settings
    from ops.usecases.migrate import Migrator

    app = App(load_settings())
    new = app.settings.encoder.model_copy(update={"seed": 1})
    try:
        rep = Migrator(app, batch_videos=batch, embed_video=stand_in).migrate(new)
        print(json.dumps(rep.to_dict()), flush=True)
    finally:
        app.close()


def stores(settings):
    from search.factory import open_history, read_registry

    url = settings.es_url.get_secret_value() if settings.es_url else None
    kw = dict(es_url=url, elastic=settings.elastic, history_dir=settings.history_dir,
              outbox_dir=settings.data_dir / "outbox")

    def registry():
        return read_registry(**kw)

    def history(model_id, dim=DIM, generation=None):
        return open_history(**kw, model_id=model_id, dim=dim, generation=generation)

    return registry, history


def run_backend(name: str, args, env: dict[str, str]) -> dict:
    from indexer.encoders.openclip import OpenClipEncoder
    from indexer.records import FrameRecord, Transcript, VideoRecord
    from ops.config import load_settings

    for k in [k for k in os.environ if k.startswith("SLUDGE_")]:
        del os.environ[k]
    os.environ.update(env)
    settings = load_settings()
    old = OpenClipEncoder("sludge-tiny", None, random_weights=True, seed=0).model_id
    registry, history = stores(settings)
    rng = np.random.default_rng(0)
    n_videos = args.frames // args.per_video
    t0 = time.perf_counter()
    with history(old) as h:
        for start in range(0, n_videos, 200):
            recs = []
            for v in range(start, min(n_videos, start + 200)):
                vid = f"{v:064x}"
                vecs = rng.standard_normal((args.per_video, DIM)).astype(np.float32)
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
                recs.append(VideoRecord(
                    video_id=vid, path=f"/bench/{v}.mp4", size_bytes=1, duration=float(args.per_video), width=720,
                    height=1280, fps=25.0, has_audio=False, transcript=Transcript(text=f"video {v}"),
                    sampler="uniform", model_id=old, uploaded_at=1.7e9 + v, indexed_at=1.7e9 + v,
                    frames=[FrameRecord(f"{vid}@{i}", vid, float(i), vecs[i]) for i in range(args.per_video)]))
            h.add_videos(recs)
        h.refresh()
    ingest_s = time.perf_counter() - t0
    print(f"{name}: wrote {n_videos * args.per_video} frames in {ingest_s:.0f} s", flush=True)

    stop = threading.Event()
    loop = {"queries": 0, "errors": 0, "first_error": None, "models": set()}

    def queries() -> None:
        qrng = np.random.default_rng(1)
        while not stop.is_set():
            try:
                with history(old) as hq:  # a fresh process would resolve the generation again
                    for _ in range(10):
                        q = qrng.standard_normal(DIM).astype(np.float32)
                        hits = hq.search_frames(q / np.linalg.norm(q), 10)
                        loop["queries"] += 1
                        if len(hits) != 10:
                            raise RuntimeError(f"{len(hits)} hits")
                    loop["models"].add(hq.model_id)
            except Exception as e:  # counted: the figure is the number of these
                loop["errors"] += 1
                loop["first_error"] = loop["first_error"] or f"{type(e).__name__}: {e}"
                time.sleep(0.1)

    qt = threading.Thread(target=queries, daemon=True)
    qt.start()
    cmd = [sys.executable, __file__, "--child", "--batch", str(args.batch)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ}, stdout=subprocess.PIPE, text=True)
    killed_at = None
    while proc.poll() is None:
        time.sleep(0.2)
        try:
            reg = registry()
        except Exception:
            continue
        if reg and reg.migration and reg.migration.videos >= args.kill_at * n_videos:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed_at = reg.migration.videos
            break
    first_wall = time.perf_counter() - t0
    proc = subprocess.run(cmd, env={**os.environ}, stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    stop.set()
    qt.join(timeout=30)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: the resumed migration failed ({proc.returncode})")
    rep = json.loads(proc.stdout.strip().splitlines()[-1])
    reg = registry()
    with history(reg.active.model_id, generation=reg.active) as hn:
        hn.refresh()
        stored = hn.stats()["frames"]
        ids = [i for page in hn.export_frames() for i in page.frame_ids]
    with history(old, generation=reg.previous) as ho:
        old_ids = {i for page in ho.export_frames() for i in page.frame_ids}
    st = rep["state"]
    return {
        "backend": name, "frames": n_videos * args.per_video, "videos": n_videos, "ingest_s": round(ingest_s, 1),
        "killed_after_videos": killed_at, "first_run_wall_s": round(first_wall, 1),
        "copy_s": round(st["seconds"], 1), "wall_s": round(wall, 1),
        "frames_per_s": round(st["frames"] / max(st["seconds"], 1e-9), 1),
        "frames_per_s_wall": round(n_videos * args.per_video / wall, 1),
        "stored_frames": stored, "distinct_frames": len(set(ids)),
        "lost": len(old_ids - set(ids)), "duplicated": stored - len(set(ids)),
        "copied_frames_counted": st["frames"],
        "query_loop": {"queries": loop["queries"], "errors": loop["errors"], "first_error": loop["first_error"],
                       "models_seen": sorted(loop["models"])},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--per-video", type=int, default=25)
    ap.add_argument("--batch", type=int, default=64, help="videos per migration step")
    ap.add_argument("--kill-at", type=float, default=0.4, help="fraction of videos copied when the child is killed")
    ap.add_argument("--backends", default="embedded,es")
    ap.add_argument("--url", default=None, help="Elasticsearch (default: one started for the run)")
    ap.add_argument("--heap", default="1g")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.batch)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    machine = machine_info()
    print("machine:", json.dumps(machine), flush=True)
    for k in [k for k in os.environ if k.startswith("SLUDGE_")]:
        del os.environ[k]
    base = {"SLUDGE_ENCODER__MODEL": "sludge-tiny", "SLUDGE_ENCODER__RANDOM_WEIGHTS": "true",
            "SLUDGE_ENCODER__SEED": "0", "SLUDGE_TRANSCRIBER__ENABLED": "false"}
    results, service = [], None
    try:
        for name in args.backends.split(","):
            root = Path(tempfile.mkdtemp(prefix=f"sludge-bench-migrate-{name}-"))
            env = {**base, "SLUDGE_DATA_DIR": str(root / "data")}
            if name == "es":
                url = args.url
                if url is None:
                    from ops.services.base import free_port
                    from ops.services.elastic import ElasticService

                    es_root = Path(tempfile.mkdtemp(prefix="sludge-bench-es-"))
                    es_root.chmod(0o755)
                    service = ElasticService(es_root, heap=args.heap)
                    url = service.start(free_port()).url
                env |= {"SLUDGE_ES_URL": url, "SLUDGE_ELASTIC__INDEX_PREFIX": f"bench-{uuid.uuid4().hex[:8]}"}
            results.append(run_backend(name, args, env))
            print(json.dumps(results[-1]), flush=True)
    finally:
        if service is not None:
            service.stop()
    print(json.dumps({"machine": machine, "results": results}))


if __name__ == "__main__":
    main()
