"""The admin CLI end to end on a real Redis bank (SLUDGE_REDIS_URL set), as an operator uses it."""

from __future__ import annotations

import json
import os
import shutil
import uuid

import pytest
from click.testing import CliRunner

from ops.cli.main import cli


@pytest.fixture
def redis_env(tmp_path, monkeypatch, redis_url, encoder):
    # One encoder for every command of the test (the session's ViT-B-32 with the same seeded
    # random weights the settings below would build): loading it per command costs ~10 s each.
    from ops.app import App

    monkeypatch.setattr(App, "encoder", property(lambda self: encoder))
    for k in list(os.environ):
        if k.startswith("SLUDGE_"):
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)
    tag = uuid.uuid4().hex[:8]
    monkeypatch.setenv("SLUDGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SLUDGE_ENCODER__RANDOM_WEIGHTS", "true")
    monkeypatch.setenv("SLUDGE_REDIS_URL", redis_url)
    monkeypatch.setenv("SLUDGE_REDIS__INDEX_NAME", f"cli-{tag}")
    monkeypatch.setenv("SLUDGE_REDIS__KEY_PREFIX", f"cli:{tag}")
    yield tmp_path
    from search.redis.bank import RedisBank, RedisBankConfig

    for prefix in (tag, tag + "b"):
        b = RedisBank(redis_url, RedisBankConfig(index_name=f"cli-{prefix}", key_prefix=f"cli:{prefix}"))
        b.drop()
        b.close()


def run(*args, ok=True):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok is not None:
        assert (result.exit_code == 0) == ok, (result.exit_code, result.output, result.stderr)
    return result


def jl(text):
    return [json.loads(x) for x in text.splitlines() if x.startswith("{")]


def test_bank_admin_cli_on_redis(redis_env, clip_a, clip_b, monkeypatch):
    env = redis_env
    run("policy", "add", "reupload", "--threshold", "0.95", "--actor", "alice")
    run("policy", "add", "sludge", "--threshold", "0.3", "--rule", "k_of_n:2")
    dup = run("policy", "add", "sludge", "--threshold", "0.5", ok=False)
    assert "already exists" in dup.stderr and "Traceback" not in dup.output

    added = jl(run("bank", "add", "--policy", "reupload", "--video", str(clip_b), "--json").stdout)
    assert len(added) == 4 and all(a["created"] and a["kind"] == "frame" and a["pdq"] for a in added)
    again = run("bank", "add", "--policy", "reupload", "--video", str(clip_b))
    assert again.stdout.count("already present (no change)") == 4
    (env / "seeds.jsonl").write_text(json.dumps({"summary": "split-screen gameplay", "note": "seed"}) + "\n"
                                     + json.dumps({"summary": "two stacked feeds"}) + "\n")
    run("bank", "add", "--policy", "sludge", "--from-jsonl", str(env / "seeds.jsonl"), "--text-field", "summary")
    # bad input: a file that is no image, and a JSONL with one bad line: nothing is written
    (env / "bad.png").write_bytes(b"not an image")
    bad = run("bank", "add", "--policy", "sludge", "--image", str(env / "bad.png"), ok=False)
    assert "not an image that can be read" in bad.stderr
    (env / "mixed.jsonl").write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"text": ""}) + "\n")
    bad = run("bank", "add", "--policy", "sludge", "--from-jsonl", str(env / "mixed.jsonl"), ok=False)
    assert "line 2" in bad.stderr and "nothing added" in bad.stderr

    rows = jl(run("bank", "list", "--json").stdout)
    assert len(rows) == 6 and {r["policy"] for r in rows} == {"reupload", "sludge"}
    assert len(jl(run("bank", "list", "--json", "--kind", "text").stdout)) == 2
    listing = run("bank", "list", "--policy", "sludge").stdout
    assert "k_of_n:2" in listing and "redis" in listing

    checked = json.loads(run("check", str(clip_b), "--json").stdout)
    by = {p["policy"]: p for p in checked["policies"]}
    assert by["reupload"]["verdict"] == "candidate" and by["reupload"]["score"] == pytest.approx(1.0, abs=1e-4)
    assert {m["signal"] for m in by["reupload"]["matches"]} <= {"embedding", "pdq"}

    frame_id = added[0]["exemplar_id"]
    run("bank", "disable", frame_id[:8], "--actor", "bob")
    assert "already disabled" in run("bank", "disable", frame_id).stdout
    shown = json.loads(run("bank", "show", frame_id, "--json").stdout)
    assert shown["enabled"] is False
    assert [h["action"] for h in shown["history"]] == ["exemplar.disable", "exemplar.add"]
    run("bank", "enable", frame_id)
    run("policy", "set", "sludge", "--threshold", "0.4")
    pol = {p["name"]: p for p in jl(run("policy", "list", "--json").stdout)}
    assert pol["sludge"]["threshold"] == 0.4 and pol["sludge"]["rule"] == "k_of_n:2" and pol["sludge"]["total"] == 2
    audit = jl(run("bank", "audit", "--json", "--limit", "3").stdout)
    assert [a["action"] for a in audit] == ["policy.update", "exemplar.enable", "exemplar.disable"]
    assert audit[2]["actor"] == "bob" and audit[0]["before"]["threshold"] == 0.3
    assert "policy.create" in run("bank", "audit").stdout

    # export with vectors -> import into a second bank: same exemplars, no re-embedding
    run("bank", "export", "--out", str(env / "bank.jsonl"), "--vectors")
    run("bank", "export", "--out", str(env / "bare.jsonl"))
    monkeypatch.setenv("SLUDGE_REDIS__INDEX_NAME", os.environ["SLUDGE_REDIS__INDEX_NAME"] + "b")
    monkeypatch.setenv("SLUDGE_REDIS__KEY_PREFIX", os.environ["SLUDGE_REDIS__KEY_PREFIX"] + "b")
    out = run("bank", "import", str(env / "bank.jsonl")).stdout
    assert "imported 6 exemplars" in out and "0 re-embedded" in out
    out = run("bank", "import", str(env / "bare.jsonl")).stdout  # no vectors: re-embedded, all present
    assert "imported 0 exemplars (6 already present, 6 re-embedded" in out
    assert {r["exemplar_id"] for r in jl(run("bank", "list", "--json").stdout)} == {r["exemplar_id"] for r in rows}
    checked = json.loads(run("check", str(clip_b), "--json").stdout)
    assert {p["policy"]: p for p in checked["policies"]}["reupload"]["verdict"] == "candidate"

    # calibrate: the re-upload is a positive, an unrelated clip a negative
    (env / "pos").mkdir()
    (env / "neg").mkdir()
    shutil.copy(clip_b, env / "pos" / "b.mkv")
    shutil.copy(clip_a, env / "neg" / "a.mp4")
    cal = json.loads(run("bank", "calibrate", "--policy", "reupload", "--positives", str(env / "pos"),
                         "--negatives", str(env / "neg"), "--json").stdout)
    assert cal["chosen"]["precision"] == 1.0 and cal["chosen"]["recall"] == 1.0
    assert cal["chosen"]["threshold"] > max(s for _, s in cal["scores"]["negatives"] if s is not None)
    text = run("bank", "calibrate", "--policy", "reupload", "--positives", str(env / "pos"),
               "--negatives", str(env / "neg")).stdout
    assert "sludge policy set reupload --threshold" in text.strip().splitlines()[-1]


def test_reindex_after_changing_hnsw_settings(redis_env, monkeypatch):
    run("policy", "add", "sludge", "--threshold", "0.3")
    run("bank", "add", "--policy", "sludge", "--text", "split-screen gameplay")
    run("bank", "add", "--policy", "sludge", "--text", "two stacked feeds")
    info = json.loads(run("bank", "info", "--json").stdout)
    assert info["backend"] == "redis" and info["hnsw_m"] == 16 and info["settings_differ"] is None
    assert info["index"].endswith("-g1") and info["exemplars"] == 2
    monkeypatch.setenv("SLUDGE_REDIS__HNSW_M", "8")
    assert "M 16 → 8" in run("bank", "info").stdout
    out = run("bank", "reindex", "--actor", "ops").stdout
    assert "rebuilt 2 exemplars (0 re-embedded, 2 copied)" in out
    info = json.loads(run("bank", "info", "--json").stdout)
    assert info["hnsw_m"] == 8 and info["settings_differ"] is None and info["index"].endswith("-g2")
    last = jl(run("bank", "audit", "--json", "--limit", "1").stdout)[0]
    assert last["action"] == "bank.rebuild" and last["actor"] == "ops" and last["after"]["m"] == 8
    # an unreachable server: one line, exit 1, no traceback
    monkeypatch.setenv("SLUDGE_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("SLUDGE_REDIS__RETRIES", "0")
    res = run("bank", "list", ok=False)
    assert "cannot reach Redis at 127.0.0.1:1/0" in res.stderr and "Traceback" not in res.output
