"""What only the Redis bank has: the index as standard tools see it, the alias swap,
failures of the server (down, killed, restarting), and the CLI against a real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from search.errors import StoreError
from search.types import Exemplar, Policy

DIM = 16


def unit(rng, n=1, dim=DIM):
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def fill(bank, rng, n=20, policy="p"):
    if bank.get_policy(policy) is None:
        bank.create_policy(Policy(policy, 0.3))
    vecs = unit(rng, n)
    ids = [bank.add(Exemplar("", policy, "text", f"t{i}", f"h{i}", "m"), v).exemplar.exemplar_id
           for i, v in enumerate(vecs)]
    return vecs, ids


def _ft_info(client, name) -> dict:
    raw = client.execute_command("FT.INFO", name)
    return {raw[i].decode() if isinstance(raw[i], bytes) else raw[i]: raw[i + 1] for i in range(0, len(raw), 2)}


def test_index_is_described_by_ft_info_and_rvl(make_redis_bank, redis_config, redis_url):
    import redis

    bank = make_redis_bank("m", DIM)
    fill(bank, np.random.default_rng(0), 5)
    client = redis.Redis.from_url(redis_url, protocol=2)
    info = _ft_info(client, redis_config.index_name)  # through the alias
    assert info["index_name"].decode() == f"{redis_config.index_name}-g1"
    assert int(info["num_docs"]) == 5
    definition = [x.decode() if isinstance(x, bytes) else x for x in info["index_definition"]]
    assert definition[definition.index("prefixes") + 1] == [f"{redis_config.key_prefix}:g1:ex".encode()]
    attrs = {a[1].decode(): [x.decode() if isinstance(x, bytes) else x for x in a] for a in info["attributes"]}
    emb = attrs["embedding"]
    assert emb[emb.index("type") + 1] == "VECTOR" and emb[emb.index("algorithm") + 1] == "HNSW"
    assert emb[emb.index("dim") + 1] == DIM and emb[emb.index("distance_metric") + 1] == "COSINE"
    assert emb[emb.index("data_type") + 1] == "FLOAT32"
    assert emb[emb.index("M") + 1] == redis_config.hnsw_m
    assert emb[emb.index("ef_construction") + 1] == redis_config.hnsw_ef_construction
    for tag in ("policy", "kind", "enabled", "model_id"):
        assert attrs[tag][attrs[tag].index("type") + 1] == "TAG"
    client.close()
    rvl = Path(sys.executable).with_name("rvl")
    out = subprocess.run([str(rvl), "index", "info", "-i", redis_config.index_name, "--url", redis_url],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for word in (f"{redis_config.index_name}-g1", "HNSW", "COSINE", "embedding", "pdq_vec", "FLAT", "L2"):
        assert word in out.stdout


def test_queries_see_the_old_index_until_the_rebuild_is_complete(make_redis_bank, redis_url, redis_config):
    from search.redis.bank import RedisBank

    bank = make_redis_bank("m", DIM)
    vecs, ids = fill(bank, np.random.default_rng(1), 10)
    reader = RedisBank(redis_url, redis_config)
    before = reader.knn(vecs[:2], 3)
    seen_during = []

    def reembed(ex, old):
        # mid-rebuild, another client still gets complete answers from the old generation
        seen_during.append(reader.knn(vecs[:2], 3) == before)
        with pytest.raises(StoreError, match="being rebuilt"):
            reader.add(Exemplar("", "p", "text", "late", "late", "m"), vecs[0])
        return old

    rep = bank.rebuild("m", DIM, reembed)
    assert seen_during and all(seen_during)
    assert rep.index == f"{redis_config.index_name}-g2" and rep.copied == 10
    assert reader.knn(vecs[:2], 3) == before  # same answers from the new generation
    assert reader.info()["index"] == rep.index
    import redis

    client = redis.Redis.from_url(redis_url, protocol=2)
    names = {n.decode() for n in client.execute_command("FT._LIST")}
    assert f"{redis_config.index_name}-g1" not in names and rep.index in names
    assert not list(client.scan_iter(match=f"{redis_config.key_prefix}:g1:*"))  # old documents dropped
    client.close()
    reader.close()


def test_unreachable_redis_is_a_clear_error_quickly():
    from ops.services.base import free_port
    from search.redis.bank import RedisBank, RedisBankConfig

    t0 = time.monotonic()
    with pytest.raises(StoreError, match=r"cannot reach Redis at 127\.0\.0\.1:\d+/0 after 3 attempts.*services start redis"):
        RedisBank(f"redis://127.0.0.1:{free_port()}/0", RedisBankConfig(retries=2, socket_timeout_s=1.0))
    assert time.monotonic() - t0 < 10


def test_kill_9_loses_no_acknowledged_change(tmp_path):
    """AOF (fsync always): everything acknowledged before SIGKILL is there after restart."""
    from ops.services.base import free_port
    from ops.services.redis import RedisService
    from search.redis.bank import RedisBank, RedisBankConfig

    try:
        from ops.services.redis import redis_binaries

        redis_binaries()
    except Exception as e:
        pytest.skip(str(e))
    svc = RedisService(tmp_path / "services", die_with_parent=True)
    port = free_port()
    st = svc.start(port)
    cfg = RedisBankConfig(index_name="k9", key_prefix="k9", retries=6, socket_timeout_s=2.0)
    try:
        bank = RedisBank(st.url, cfg, model_id="m", dim=DIM)
        rng = np.random.default_rng(2)
        vecs, ids = fill(bank, rng, 200)
        bank.set_enabled(ids[0], False, actor="alice")
        bank.remove(ids[1], actor="alice")
        before = bank.knn(vecs[:10], 5)
        counts = bank.counts()
        audit = [(a.action, a.target) for a in bank.audit(limit=5)]
        os.kill(st.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and svc.running() is not None:
            time.sleep(0.05)
        with pytest.raises(StoreError, match="cannot reach Redis"):
            bank.counts()
        svc.start(port)
        again = RedisBank(st.url, cfg, model_id="m", dim=DIM)  # retries while the server loads
        assert again.knn(vecs[:10], 5) == before
        assert again.counts() == counts == {"p": {"total": 199, "enabled": 198}}
        assert [(a.action, a.target) for a in again.audit(limit=5)] == audit
        again.close()
        bank.close()
    finally:
        svc.stop()


def test_services_cli_start_status_stop(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from ops.cli.main import cli
    from ops.services.base import free_port

    for k in list(os.environ):
        if k.startswith("SLUDGE_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("SLUDGE_DATA_DIR", str(tmp_path / "data"))
    try:
        from ops.services.redis import redis_binaries

        redis_binaries()
    except Exception as e:
        pytest.skip(str(e))
    port = free_port()
    runner = CliRunner()
    try:
        res = runner.invoke(cli, ["services", "start", "redis", "--port", str(port)], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        assert res.stdout.strip().splitlines()[-1] == f"redis://127.0.0.1:{port}/0"
        status = json.loads(runner.invoke(cli, ["services", "status", "redis", "--json"]).stdout)
        assert status["running"] and status["port"] == port
        import redis

        with redis.Redis(port=port) as r:
            assert r.config_get("appendonly")["appendonly"] == "yes"
            assert r.config_get("bind")["bind"] == "127.0.0.1"
            assert {m[b"name"] for m in r.module_list()} >= {b"search"}
    finally:
        res = runner.invoke(cli, ["services", "stop", "redis"])
    assert "redis stopped" in res.output
    assert not json.loads(runner.invoke(cli, ["services", "status", "redis", "--json"]).stdout)["running"]


def test_restart_loading_is_retried_within_bounds_or_reported(tmp_path):
    """While Redis loads its data after a restart it answers LOADING: a bank with retries waits
    it out (bounded), one without says so in one line. Loading is slowed down on purpose."""
    import dataclasses

    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from ops.services.base import free_port, pid_alive
    from ops.services.redis import RedisService
    from search.redis.bank import RedisBank, RedisBankConfig

    try:
        from ops.services.redis import redis_binaries

        redis_binaries()
    except Exception as e:
        pytest.skip(str(e))
    svc = RedisService(tmp_path / "services", ["--key-load-delay", "20000",  # 20 ms per key while loading
                                               "--loading-process-events-interval-bytes", "1024"],
                       die_with_parent=True)
    port = free_port()
    st = svc.start(port)
    cfg = RedisBankConfig(index_name="ld", key_prefix="ld", retries=0, socket_timeout_s=2.0)
    pid = None
    try:
        bank = RedisBank(st.url, cfg, model_id="m", dim=DIM)
        vecs, _ = fill(bank, np.random.default_rng(3), 120)
        before = bank.knn(vecs[:5], 3)
        bank.close()
        raw = redis.Redis(port=port, retry=Retry(NoBackoff(), 0))
        raw.bgrewriteaof()  # the AOF base becomes an RDB file, which is what key-load-delay slows
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and int(raw.info("persistence")["aof_rewrite_in_progress"]):
            time.sleep(0.1)
        os.kill(st.pid, signal.SIGKILL)
        while pid_alive(st.pid):
            time.sleep(0.05)
        pid = svc.launch(port)
        loading = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not loading:
            try:
                raw.ping()
                break
            except redis.exceptions.BusyLoadingError:
                loading = True
            except redis.exceptions.ConnectionError:
                time.sleep(0.02)
        if not loading:
            pytest.skip("the server finished loading before it could be observed (machine too fast or too busy)")
        with pytest.raises(StoreError, match="still loading its data after a restart; retry in a few seconds"):
            RedisBank(st.url, cfg)
        patient = RedisBank(st.url, dataclasses.replace(cfg, retries=8))
        assert patient.knn(vecs[:5], 3) == before
        patient.close()
        raw.close()
    finally:
        for p in (pid, st.pid):
            if p and pid_alive(p):
                os.kill(p, signal.SIGTERM)
                deadline = time.monotonic() + 10
                while pid_alive(p) and time.monotonic() < deadline:
                    time.sleep(0.05)
