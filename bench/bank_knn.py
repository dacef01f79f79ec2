"""The Redis exemplar bank under load: KNN latency, recall against exact search, inserts, memory.

Runs against a real Redis with RediSearch (``--url``, else a local server
started here with ``sludge services``' launcher on a free port and stopped at
the end). Exemplars are drawn from clustered data (Gaussian clusters around
random centres, L2-normalised, as embeddings of related content are):
HNSW recall on uniform noise says nothing about real banks. Queries are new
points from the same clusters, not copies of stored ones.

Measured through :class:`search.redis.bank.RedisBank` (RedisVL queries, the
same code path as ``sludge check``):

- inserts per second (``add_many``: pipelined MULTI/EXEC chunks, audit entries included);
- KNN k=10 latency p50/p99, one query at a time, unfiltered and filtered to one
  policy (``--policies`` policies of equal size);
- recall@10 of both against exact search (faiss IndexFlatIP) over the same candidates;
- memory per exemplar (Redis ``used_memory`` growth / n, and the vector index alone).

Targets on the development machine: p50 ≤ 2 ms, p99 ≤ 10 ms, recall@10 ≥ 0.98.
Last line of output: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import machine_info  # noqa: E402


def clustered(rng: np.random.Generator, n: int, dim: int, clusters: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    labels = rng.integers(0, clusters, n)
    x = centres[labels] + spread * rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, labels


def exact_top(bank_vecs: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k rows by inner product: faiss IndexFlatIP (GPU where faiss-gpu sees one)."""
    from search.faiss_engine import exact_search

    return exact_search(bank_vecs, queries, k)[1]


def percentile_ms(samples: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(samples) * 1000.0, q)), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="exemplars (default 100,000)")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--clusters", type=int, default=0, help="default n/100")
    ap.add_argument("--spread", type=float, default=0.6, help="cluster noise per dimension (centres ~ N(0,1))")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--policies", type=int, default=10)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef-runtime", type=int, nargs="+", default=[64])
    ap.add_argument("--hybrid-policy", nargs="+", default=["adaptive"],
                    choices=["adaptive", "auto", "BATCHES", "ADHOC_BF"],
                    help="filtered KNN strategy(ies) to measure: adaptive (the bank's default), "
                         "auto (RediSearch chooses), or one forced")
    ap.add_argument("--url", default=os.environ.get("SLUDGE_BENCH_REDIS_URL"),
                    help="Redis with RediSearch (default: start a local one for the run)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    # SIGTERM (timeout, a CI runner) must still run the finally below: it stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from search.redis.bank import RedisBank, RedisBankConfig
    from search.types import Exemplar, Policy

    info = machine_info()
    info["loadavg_start"] = os.getloadavg()
    rng = np.random.default_rng(args.seed)
    clusters = args.clusters or max(10, args.n // 100)
    data, _ = clustered(rng, args.n + args.queries, args.dim, clusters, args.spread)
    vecs, queries = data[:args.n], data[args.n:]
    policy_of = rng.integers(0, args.policies, args.n)

    svc = tmp = None
    url = args.url
    if url is None:
        from ops.services.base import free_port
        from ops.services.redis import RedisService

        tmp = tempfile.TemporaryDirectory(prefix="bank-bench-")
        svc = RedisService(Path(tmp.name), die_with_parent=True)
        url = svc.start(free_port()).url
    cfg = RedisBankConfig(index_name=f"bench-{os.getpid()}", key_prefix=f"bench:{os.getpid()}",
                          hnsw_m=args.m, hnsw_ef_construction=args.ef_construction,
                          hnsw_ef_runtime=args.ef_runtime[0], socket_timeout_s=30.0)
    bank = RedisBank(url, cfg, model_id="bench/clustered", dim=args.dim)
    result: dict = {"bench": "bank_knn", "machine": info, "n": args.n, "dim": args.dim, "clusters": clusters,
                    "spread": args.spread, "queries": args.queries, "k": args.k, "policies": args.policies,
                    "hnsw_m": args.m, "hnsw_ef_construction": args.ef_construction, "url_given": args.url is not None}
    try:
        import redis

        raw = redis.Redis.from_url(url, protocol=2)
        mem0 = int(raw.info("memory")["used_memory"])
        for p in range(args.policies):
            bank.create_policy(Policy(f"p{p}", 0.3))
        items = [(Exemplar("", f"p{policy_of[i]}", "frame", f"bench/{i}.mp4@0.50s", f"c{i}", "bench/clustered"),
                  vecs[i]) for i in range(args.n)]
        t0 = time.perf_counter()
        done = 0
        step = 5000
        for i in range(0, args.n, step):
            bank.add_many(items[i:i + step], actor="bench")
            done = min(args.n, i + step)
            rate = done / (time.perf_counter() - t0)
            print(f"  inserted {done:>7}/{args.n}  {rate:7.0f}/s", file=sys.stderr, flush=True)
        insert_s = time.perf_counter() - t0
        result["inserts_per_s"] = round(args.n / insert_s, 1)
        result["insert_seconds"] = round(insert_s, 1)
        ft = bank.info()
        mem1 = int(raw.info("memory")["used_memory"])
        audit_bytes = int(raw.memory_usage(f"{cfg.key_prefix}:audit", samples=0) or 0)
        result["memory_bytes_per_exemplar"] = round((mem1 - mem0) / args.n, 1)
        result["memory_bytes_per_exemplar_without_audit"] = round((mem1 - mem0 - audit_bytes) / args.n, 1)
        result["vector_index_mb"] = round(ft.get("vector_index_mb", 0.0), 1)
        result["raw_vector_bytes"] = args.dim * 4

        truth_all = exact_top(vecs, queries, args.k)
        qpol = rng.integers(0, args.policies, args.queries)
        truth_pol = np.empty_like(truth_all)
        members = {p: np.flatnonzero(policy_of == p) for p in range(args.policies)}
        for p, idx in members.items():
            sel = np.flatnonzero(qpol == p)
            if len(sel):
                truth_pol[sel] = idx[exact_top(vecs[idx], queries[sel], args.k)]
        id_of = {it[0].exemplar_id: i for i, it in enumerate(items)}

        result["runs"] = []
        modes = [("unfiltered", False, None)] + [
            ("filtered" if h == "adaptive" else f"filtered/{h}", True, h)
            for h in args.hybrid_policy]
        for ef in args.ef_runtime:
            bank.ef_runtime = ef
            for label, filtered, hybrid in modes:
                bank.hybrid_policy = hybrid
                for q in queries[:20]:  # warm the connection and caches
                    bank.knn(q[None, :], args.k, [f"p{qpol[0]}"] if filtered else None)
                lat, hits = [], 0
                for j, q in enumerate(queries):
                    pols = [f"p{qpol[j]}"] if filtered else None
                    t = time.perf_counter()
                    got = bank.knn(q[None, :], args.k, pols)[0]
                    lat.append(time.perf_counter() - t)
                    want = set((truth_pol if filtered else truth_all)[j].tolist())
                    hits += len(want & {id_of[m.exemplar_id] for m in got})
                run = {"ef_runtime": ef, "filter": label, "p50_ms": percentile_ms(lat, 50),
                       "p99_ms": percentile_ms(lat, 99), "mean_ms": round(1000 * float(np.mean(lat)), 3),
                       "recall_at_10": round(hits / (args.k * len(queries)), 4)}
                result["runs"].append(run)
                ok = run["p50_ms"] <= 2 and run["p99_ms"] <= 10 and run["recall_at_10"] >= 0.98
                print(f"ef_runtime {ef:>4} {label:>18}: p50 {run['p50_ms']:6.2f} ms  p99 {run['p99_ms']:6.2f} ms  "
                      f"recall@10 {run['recall_at_10']:.4f}  {'meets' if ok else 'MISSES'} targets")
        info["loadavg_end"] = os.getloadavg()
        print(f"n {args.n} x {args.dim}-d ({clusters} clusters): {result['inserts_per_s']:.0f} inserts/s; "
              f"{result['memory_bytes_per_exemplar']:.0f} B/exemplar "
              f"({result['memory_bytes_per_exemplar_without_audit']:.0f} without the audit log; "
              f"raw vector {args.dim * 4} B); vector index {result['vector_index_mb']} MB")
        print(f"machine: {info.get('cpu')} ({info.get('cores')} cores), load {info['loadavg_start']} → "
              f"{info['loadavg_end']}")
        raw.close()
    finally:
        try:
            bank.drop()
        finally:
            bank.close()
            if svc is not None:
                svc.stop()
                tmp.cleanup()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
