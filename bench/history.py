"""Frame history on a real Elasticsearch: bulk throughput, kNN latency and recall against exact search.

    python bench/history.py [--frames 200000] [--url http://127.0.0.1:9200] [--heap 1g]

Without --url a local server is started for the run (sludge services, in a
temporary folder) and stopped afterwards. Data: CLIP-shaped synthetic
embeddings (``Embeddings``: ViT-B-32's 512 dimensions, a 64-dimensional latent
space of 1,000 topics, a shared cone; 4 frames per video, 5 layouts) and two
kinds of query, image-to-image and text-to-image. Measured through ElasticHistory, i.e. with the client's own overhead:

- bulk: frames per second through ``add_videos`` (streaming bulk, no refresh wait);
- kNN p50/p99 (ms) of ``search_frames`` at k=10 and k=100, without and with a
  layout filter (about 20 % of frames), before and after a force-merge to one
  segment;
- recall@10 and recall@100 against exact search (faiss IndexFlatIP) over the same (filtered) set.

Prints the figures and the machine; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine_info  # noqa: E402
from indexer.records import FrameRecord, Transcript, VideoRecord  # noqa: E402
from search.elastic.history import ElasticHistory  # noqa: E402
from search.history import HistoryFilter  # noqa: E402

LAYOUTS = ("single_scene", "vertical", "horizontal", "picture-in-picture", "grid")
MODEL = "bench/ViT-B-32"


class Cfg:
    def __init__(self, prefix: str, args) -> None:
        self.index_prefix = prefix
        self.hnsw_m = args.m
        self.hnsw_ef_construction = args.ef_construction
        self.num_candidates = args.num_candidates
        self.rescore_oversample = args.rescore_oversample
        self.index_type = args.index_type
        self.shards = args.shards
        self.replicas = 0
        self.rollover_max_docs = 100_000_000
        self.rollover_max_age = "3650d"
        self.bulk_chunk = args.chunk
        self.bulk_threads = args.bulk_threads
        self.request_timeout_s = 600.0
        self.retries = 5


class Embeddings:
    """Synthetic frame and query embeddings shaped like CLIP's, so approximate recall means something.

    Frames: 1,000 topics in a 64-dimensional latent space, mapped into 512 dimensions, plus a shared
    direction that puts every frame in a narrow cone (CLIP's image embeddings have a mean pairwise cosine
    of about 0.4-0.5; here 0.45) and a little full-rank noise. Queries are of two kinds, as in use:
    image-to-image (a frame plus noise of norm 0.3, cosine to it about 0.96) and text-to-image, which lie
    outside the frames' cone (a "modality gap" direction), with a best cosine of about 0.28 as CLIP's text
    queries have. Isotropic 512-dimensional clusters with near-random queries, what this benchmark used
    before, make every neighbour a near tie: recall@10 then measures tie-breaking, and a single HNSW graph
    (faiss' as well as Lucene's) scores about 0.6 on it at ef 100 against 1.0 here.
    """

    def __init__(self, n: int, dim: int, clusters: int, intrinsic: int, rng) -> None:
        self.rng, self.dim = rng, dim
        self.basis = np.linalg.qr(rng.standard_normal((dim, intrinsic)))[0].T.astype(np.float32)
        self.centres = rng.standard_normal((clusters, intrinsic)).astype(np.float32)
        cone = rng.standard_normal(dim).astype(np.float32)
        cone /= np.linalg.norm(cone)
        x = np.empty((n, dim), np.float32)
        for s in range(0, n, 50_000):  # in slices: 1M x 512 floats at once is 2 GB per temporary
            m = min(n, s + 50_000) - s
            z = (self.centres[rng.integers(0, clusters, m)]
                 + 0.5 * rng.standard_normal((m, intrinsic)).astype(np.float32))
            x[s:s + m] = (z @ self.basis + 0.02 * rng.standard_normal((m, dim)).astype(np.float32)
                          + np.sqrt(intrinsic) * cone)
        self.vectors = x / np.linalg.norm(x, axis=1, keepdims=True)
        gap = rng.standard_normal(dim).astype(np.float32)
        gap -= gap @ self.basis.T @ self.basis
        self.gap = gap / np.linalg.norm(gap)

    def queries(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """``count`` queries, the first half image-like and the rest text-like; returns (queries, kinds)."""
        rng, d = self.rng, self.dim
        n_img = count // 2
        img = self.vectors[rng.choice(len(self.vectors), n_img, replace=False)]
        img = img + 0.3 / np.sqrt(d) * rng.standard_normal(img.shape).astype(np.float32)
        n_txt = count - n_img
        sem = (self.centres[rng.integers(0, len(self.centres), n_txt)]
               + 0.5 * rng.standard_normal((n_txt, self.centres.shape[1])).astype(np.float32)) @ self.basis
        sem /= np.linalg.norm(sem, axis=1, keepdims=True)
        txt = sem + 2.0 * self.gap + 0.6 / np.sqrt(d) * rng.standard_normal((n_txt, d)).astype(np.float32)
        q = np.concatenate([img, txt]).astype(np.float32)
        return q / np.linalg.norm(q, axis=1, keepdims=True), np.array(["image"] * n_img + ["text"] * n_txt)


def records(vectors: np.ndarray, layouts: np.ndarray, per_video: int = 4):
    for start in range(0, len(vectors), per_video):
        vid = f"{start // per_video:064x}"
        frames = [FrameRecord(f"{vid}@{i * 1000:09d}", vid, float(i), vectors[start + i])
                  for i in range(min(per_video, len(vectors) - start))]
        yield VideoRecord(
            video_id=vid, path=f"/bench/{vid[-8:]}.mp4", size_bytes=1, duration=float(per_video), width=720,
            height=1280, fps=25.0, has_audio=False, transcript=Transcript(), sampler="uniform:4", model_id=MODEL,
            frames=frames, uploaded_at=1.7e9 + start, indexed_at=time.time(), layout=str(layouts[start // per_video]),
        )


def pct(xs, p):
    return float(np.percentile(np.asarray(xs) * 1000.0, p))


def knn_round(h, queries, kinds, truth, k, where, nc):
    lat, rec = [], []
    for q, t in zip(queries, truth):
        t0 = time.perf_counter()
        hits = h.search_frames(q, k, where=where, num_candidates=nc)
        lat.append(time.perf_counter() - t0)
        got = {x.frame_id for x in hits}
        rec.append(len(got & t) / k)
    rec = np.asarray(rec)
    out = {"k": k, "num_candidates": nc, "p50_ms": round(pct(lat, 50), 2), "p99_ms": round(pct(lat, 99), 2),
           f"recall@{k}": round(float(rec.mean()), 4)}
    for kind in ("image", "text"):
        out[f"recall@{k}_{kind}"] = round(float(rec[kinds == kind].mean()), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--intrinsic-dim", type=int, default=64, help="latent dimension of the synthetic frames")
    ap.add_argument("--queries", type=int, default=200, help="half image-to-image, half text-to-image")
    ap.add_argument("--url", default=None)
    ap.add_argument("--heap", default="1g")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=100)
    ap.add_argument("--num-candidates", type=int, default=100)
    ap.add_argument("--index-type", choices=["int8_hnsw", "hnsw"], default="int8_hnsw", help="as elastic.index_type")
    ap.add_argument("--rescore-oversample", type=float, default=3.0,
                    help="k × this many approximate hits re-ranked by exact cosine (0: off), as elastic.rescore_oversample")
    ap.add_argument("--chunk", type=int, default=500)
    ap.add_argument("--bulk-threads", type=int, default=2, help="bulk requests in flight, as elastic.bulk_threads")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--no-merge", action="store_true")
    args = ap.parse_args()
    # SIGTERM (a time limit, bench/report.py) must still run the finally below: it stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    machine = machine_info()
    machine["loadavg_start"] = os.getloadavg()
    print("machine:", json.dumps(machine), flush=True)
    service = root = None
    url = args.url
    if url is None:
        from ops.services.base import free_port
        from ops.services.elastic import ElasticService

        root = Path(tempfile.mkdtemp(prefix="sludge-bench-es-"))
        root.chmod(0o755)
        service = ElasticService(root, heap=args.heap)
        t0 = time.perf_counter()
        url = service.start(free_port()).url
        print(f"started Elasticsearch at {url} in {time.perf_counter() - t0:.0f} s (heap {args.heap})", flush=True)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(0)
    data = Embeddings(args.frames, args.dim, args.clusters, args.intrinsic_dim, rng)
    vectors = data.vectors
    layouts = rng.choice(LAYOUTS, size=(args.frames + 3) // 4)
    frame_layout = np.repeat(layouts, 4)[: args.frames]
    queries, kinds = data.queries(args.queries)
    ids = np.array([f"{i // 4:064x}@{(i % 4) * 1000:09d}" for i in range(args.frames)])

    def exact(mask=None):  # faiss IndexFlatIP (on GPU where faiss-gpu sees one): the ground truth
        from search.faiss_engine import exact_search

        names = ids if mask is None else ids[mask]
        top = exact_search(vectors if mask is None else vectors[mask], queries, 100)[1]
        return [list(names[row]) for row in top]

    truth_all_l = exact()
    vertical = frame_layout == "vertical"
    truth_f_l = exact(vertical)
    out: dict = {"frames": args.frames, "dim": args.dim, "clusters": args.clusters,
                 "intrinsic_dim": args.intrinsic_dim, "queries": args.queries,
                 "hnsw": {"type": args.index_type, "m": args.m, "ef_construction": args.ef_construction},
                 "shards": args.shards, "server": url,
                 "filter_fraction": round(float(vertical.mean()), 3)}
    h = ElasticHistory(url, Cfg(prefix, args), model_id=MODEL, dim=args.dim,
                       outbox_dir=Path(tempfile.mkdtemp(prefix="sludge-bench-outbox-")))
    try:
        batch, t0, done = [], time.perf_counter(), 0
        cpu0 = time.process_time()
        for rec in records(vectors, layouts):
            batch.append(rec)
            if len(batch) * 4 >= 2000:
                h.add_videos(batch)
                done += sum(len(r.frames) for r in batch)
                batch = []
                if done % 20000 == 0:
                    el = time.perf_counter() - t0
                    print(f"  bulk {done} frames, {done / el:.0f} frames/s", flush=True)
        if batch:
            h.add_videos(batch)
        bulk_s = time.perf_counter() - t0
        out["bulk_client_cpu_s"] = round(time.process_time() - cpu0, 1)  # this process: serializing, HTTP
        assert h.pending() == 0, "frames went to the outbox during the benchmark"
        h.refresh()
        refresh_s = time.perf_counter() - t0 - bulk_s
        out["bulk_frames_per_s"] = round(args.frames / bulk_s, 1)
        out["bulk_seconds"] = round(bulk_s, 1)
        out["refresh_seconds"] = round(refresh_s, 1)
        print(f"bulk: {out['bulk_frames_per_s']} frames/s ({bulk_s:.0f} s, client CPU {out['bulk_client_cpu_s']} s, "
              f"then refresh {refresh_s:.1f} s)",
              flush=True)
        f_vertical = HistoryFilter(layouts=("vertical",))

        def rounds(label):
            h.search_frames(queries[0], 10)  # warm
            res = {}
            for k, nc in ((10, args.num_candidates), (100, max(args.num_candidates, 200)), (100, 500)):
                t = [set(x[:k]) for x in truth_all_l]
                res[f"k{k}_nc{nc}"] = knn_round(h, queries, kinds, t, k, None, nc)
                tf = [set(x[:k]) for x in truth_f_l]
                res[f"k{k}_nc{nc}_filter_vertical"] = knn_round(h, queries, kinds, tf, k, f_vertical, nc)
            st = h.stats()
            res["segments"] = sum(i["segments"] for n, i in st["indices"].items() if n.startswith(prefix + "-0"))
            res["bytes_on_disk"] = st["bytes_on_disk"]
            for name, r in res.items():
                if isinstance(r, dict):
                    at = f"recall@{r['k']}"
                    print(f"{label} {name}: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, {at} {r[at]} "
                          f"(image {r[at + '_image']}, text {r[at + '_text']}; num_candidates {r['num_candidates']})",
                          flush=True)
            print(f"{label}: {res['segments']} segments, {res['bytes_on_disk'] / 2**20:.0f} MiB", flush=True)
            return res

        out["before_merge"] = rounds("before merge")
        if not args.no_merge:
            t0 = time.perf_counter()
            h.force_merge(1)
            out["force_merge_seconds"] = round(time.perf_counter() - t0, 1)
            print(f"force-merge to 1 segment: {out['force_merge_seconds']} s", flush=True)
            out["after_merge"] = rounds("after merge")
    finally:
        try:
            h.client.indices.delete(index=f"{prefix}*")
            h.client.indices.delete_index_template(name=f"{prefix}-frames")
        except Exception as e:  # noqa: BLE001
            print(f"cleanup: {e}", file=sys.stderr)
        h.close()
        if service is not None:
            service.stop()
            shutil.rmtree(root, ignore_errors=True)
    out["loadavg_end"] = os.getloadavg()
    out["machine"] = machine
    print(json.dumps(out))


if __name__ == "__main__":
    main()
