"""The cascade from the command line: `sludge check --confirm` and `sludge sweep confirm`.

Embedded stores, generated composites, the session's ViT-B-32 with seeded
RANDOM weights, and the tiny Visual-Qwen configuration (real architectures,
RANDOM weights, untrained, no adapter): stage two runs for real, but its
answers mean nothing, so the tests check which stage decided, what it cost and
what was recorded, never what the model thinks. The band settings force the
stage: (-2, 2) puts every bank margin in the band (stage two); (2, 2) clears
and (-2, -2) flags every video at stage one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ops.cli.main import cli
from indexer.decision import DECISION_OF_VERDICT

pytest.importorskip("transformers")

SAMPLER = "uniform:2"
OLD_CHECK_KEYS = {"path", "verdict", "policies", "frames", "layout", "model_id", "random_weights", "warnings",
                  "seconds"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one torch thread (a second one only spins on a shared machine)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained tiny Visual-Qwen folder (``visual_qwen.json`` naming the components, no adapter)."""
    from classifier.load import MODEL_CONFIG
    from classifier.tiny import build_tiny_base

    d = tmp_path_factory.mktemp("vq_tiny")
    build_tiny_base(d / "base", seed=0)
    (d / MODEL_CONFIG).write_text(json.dumps({
        "format": 1, "config": "tiny", "random_weights": True,
        "components": {"blip2": "base/blip2", "qwen": "base/qwen3", "tokenizer": "base/qwen3",
                       "projector": "base/projector.safetensors"},
    }))
    return d


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    from ops.synthetic.composite import make_composite, make_single

    d = tmp_path_factory.mktemp("cascade_media")
    return {
        "stack": make_composite(d / "stack.mp4", "vertical", canvas=(144, 256), duration=2.0, fps=10, audio=None,
                                seed=1),
        "single": make_single(d / "single.mp4", canvas=(144, 256), duration=2.0, fps=10, audio=None, seed=101),
        "other": make_single(d / "other.mp4", canvas=(144, 256), duration=2.0, fps=10, audio=None, seed=102),
    }


@pytest.fixture
def env(tmp_path, monkeypatch, encoder, tiny_model):
    # One CLIP encoder for every command (the session's, the same seeded random weights the
    # settings below would build): loading it per command costs seconds each.
    from ops.app import App

    monkeypatch.setattr(App, "encoder", property(lambda self: encoder))
    for k in list(os.environ):
        if k.startswith("SLUDGE_"):
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)
    for k, v in {
        "DATA_DIR": str(tmp_path / "data"),
        "ENCODER__RANDOM_WEIGHTS": "true",
        "TRANSCRIBER__ENABLED": "false",
        "INDEX__SAMPLER": SAMPLER,
        "CLASSIFIER__MODEL": str(tiny_model),
        "CLASSIFIER__DEVICE": "cpu",
        "CLASSIFIER__SAMPLER": SAMPLER,
    }.items():
        monkeypatch.setenv("SLUDGE_" + k, v)
    return tmp_path


def band(monkeypatch, low: float, high: float) -> None:
    monkeypatch.setenv("SLUDGE_CLASSIFIER__BAND_LOW", str(low))
    monkeypatch.setenv("SLUDGE_CLASSIFIER__BAND_HIGH", str(high))


def no_model(monkeypatch, env) -> None:
    """Stage two would fail: proves a stage-one run never loads the confirm model."""
    monkeypatch.setenv("SLUDGE_CLASSIFIER__MODEL", str(env / "no-such-model"))


def run(*args, ok=True):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok is not None:
        assert (result.exit_code == 0) == ok, (result.exit_code, result.output, result.stderr)
    return result


def last_json(text: str):
    return json.loads([line for line in text.splitlines() if line.startswith(("{", "["))][-1])


def test_check_confirm_reaches_stage_two_in_band(env, videos, monkeypatch):
    run("bank", "add", "--policy", "sludge", "--text", "split-screen gameplay")
    plain = last_json(run("check", str(videos["stack"]), "--json").stdout)
    assert set(plain) == OLD_CHECK_KEYS  # without --confirm: today's fields, nothing more
    (pol,) = plain["policies"]
    assert pol["policy"] == "sludge" and pol["score"] is not None

    band(monkeypatch, -2, 2)
    out = last_json(run("check", str(videos["stack"]), "--confirm", "--json").stdout)
    assert set(out) == OLD_CHECK_KEYS | {"cascade"}
    assert [p["score"] for p in out["policies"]] == pytest.approx([pol["score"]])  # the same bank match
    c = out["cascade"]
    assert c["stage"] == 2 and c["verdict"] in ("sludge", "clear", "review")
    assert c["decision"] == DECISION_OF_VERDICT[c["verdict"]]
    assert c["cost"]["model_calls"] == 2  # uniform:2: one LM answer per frame
    assert c["cost"]["seconds"]["stage2"] > 0 and c["cost"]["seconds"]["stage1"] > 0
    assert c["confirm"]["vote"]["frames"] == 2 and len(c["confirm"]["frames"]) == 2
    assert c["evidence"]["band"] == [-2.0, 2.0] and c["evidence"]["best_policy"] == "sludge"
    assert c["evidence"]["best_margin"] == pytest.approx(pol["score"] - pol["threshold"], abs=1e-3)
    assert "in band" in c["reason"] and "stage two:" in c["reason"]

    table = run("check", str(videos["stack"]), "--confirm").output
    assert f"decision: {c['decision']}" in table and "stage 2" in table and "2 model calls" in table
    assert "of 2 frames" in table  # the vote


def test_check_confirm_decides_at_stage_one_outside_the_band(env, videos, monkeypatch):
    run("bank", "add", "--policy", "sludge", "--text", "split-screen gameplay")
    monkeypatch.setenv("SLUDGE_CLASSIFIER__CONFIRM_ON_LAYOUT", "false")
    no_model(monkeypatch, env)
    band(monkeypatch, 2, 2)
    c = last_json(run("check", str(videos["stack"]), "--confirm", "--json").stdout)["cascade"]
    assert (c["decision"], c["verdict"], c["stage"], c["cost"]["model_calls"]) == ("cleared", "clear", 1, 0)
    assert c["confirm"] is None and c["cost"]["seconds"]["stage2"] == 0.0
    assert "< +2.000" in c["reason"]
    band(monkeypatch, -2, -2)
    c = last_json(run("check", str(videos["single"]), "--confirm", "--json").stdout)["cascade"]
    assert (c["decision"], c["verdict"], c["stage"], c["cost"]["model_calls"]) == ("flagged", "sludge", 1, 0)
    assert "≥ -2.000" in c["reason"]
    table = run("check", str(videos["single"]), "--confirm").output
    assert "decision: flagged" in table and "stage 1" in table and "0 model calls" in table
    # an empty bank: nothing to match, no layout signal: cleared without the model
    monkeypatch.setenv("SLUDGE_DATA_DIR", str(env / "empty"))
    c = last_json(run("check", str(videos["stack"]), "--confirm", "--json").stdout)["cascade"]
    assert (c["decision"], c["stage"]) == ("cleared", 1) and "no bank match" in c["reason"]


def test_sweep_confirm_records_decisions(env, videos, monkeypatch):
    folder = env / "uploads"
    folder.mkdir()
    for name, p in videos.items():
        shutil.copy(p, folder / f"{name}.mp4")
    indexed = {Path(i["path"]).stem: i["video_id"]
               for i in map(json.loads, run("index", str(folder), "--no-transcribe", "--json").stdout.splitlines())}
    assert set(indexed) == {"stack", "single", "other"}
    run("sweep", "--policy", "sl", "--query", "split-screen gameplay", "--min-score", "-1")
    assert len(last_json(run("sweep", "list", "--policy", "sl", "--format", "json").stdout)) == 3
    (folder / "other.mp4").unlink()
    gone = indexed["other"]

    def decisions_in_history(decision: str) -> set[str]:
        hits = last_json(run("recall", "--query", "anything", "--decision", decision, "--format", "json").stdout)
        return {h["video_id"] for h in hits}

    # 1. every margin in the band: the two readable videos go to the model in one batch (--undecided: none
    #    has a decision yet, so none is skipped)
    band(monkeypatch, -2, 2)
    res = last_json(run("sweep", "confirm", "--policy", "sl", "--undecided", "--json").stdout)
    assert res["skipped_decided"] == 0
    rows = {r["video_id"]: r for r in res["decisions"]}
    assert set(rows) == set(indexed.values()) and res["policy"] == "sl"
    g = rows[gone]
    assert (g["decision"], g["verdict"], g["unreadable"], g["recorded"]) == ("review", "review", True, True)
    assert gone[:12] in g["reason"] and "is gone" in g["reason"] and g["cost"]["model_calls"] == 0
    for vid in (indexed["stack"], indexed["single"]):
        r = rows[vid]
        assert r["stage"] == 2 and r["cost"]["model_calls"] == 2 and r["confirm"]["vote"]["frames"] == 2
        assert r["decision"] == DECISION_OF_VERDICT[r["verdict"]] and r["recorded"] is True
        assert (r["threshold"], r["threshold_from"]) == (-1.0, "sweep")  # the sweep's --min-score
        assert r["evidence"]["policies"][0]["policy"] == "sl"
        assert r["evidence"]["policies"][0]["score"] == pytest.approx(r["score"], abs=1e-4)
    s = res["summary"]
    assert (s["candidates"], s["stage2"], s["model_calls"], s["unreadable"], s["recorded"]) == (3, 2, 4, 1, 3)
    assert s["flagged"] + s["cleared"] + s["review"] == 3
    for decision in ("flagged", "cleared", "review"):
        assert decisions_in_history(decision) == {v for v, r in rows.items() if r["decision"] == decision}

    # 2. the policy's bank threshold, a band that flags every margin at stage one, the best two only
    run("policy", "add", "sl", "--threshold", "0.3")
    band(monkeypatch, -2, -2)
    no_model(monkeypatch, env)
    res = last_json(run("sweep", "confirm", "--policy", "sl", "--limit", "2", "--json").stdout)
    assert len(res["decisions"]) == 2
    for r in res["decisions"]:
        assert (r["threshold"], r["threshold_from"]) == (0.3, "bank")
        want = ("review", 1) if r["video_id"] == gone else ("flagged", 1)
        assert (r["decision"], r["stage"]) == want and r["cost"]["model_calls"] == 0
    flagged = {r["video_id"] for r in res["decisions"] if r["decision"] == "flagged"}
    assert flagged and decisions_in_history("flagged") >= flagged

    # 3. --threshold: nothing reaches a cosine of 1.0; margins below the band clear at stage one
    band(monkeypatch, 0, 0)
    monkeypatch.setenv("SLUDGE_CLASSIFIER__CONFIRM_ON_LAYOUT", "false")
    out = run("sweep", "confirm", "--policy", "sl", "--threshold", "1.0").output
    assert "3 candidates: flagged 0, cleared 2, review 1 (1 unreadable)" in out and "0 model calls" in out
    assert gone[:12] in out and "is gone" in out
    assert decisions_in_history("cleared") == {indexed["stack"], indexed["single"]}
    assert decisions_in_history("review") == {gone}
    assert decisions_in_history("flagged") == set()

    # 4. --undecided leaves decided videos alone (here: all of them)
    res = last_json(run("sweep", "confirm", "--policy", "sl", "--undecided", "--json").stdout)
    assert res["decisions"] == [] and res["skipped_decided"] == 3
    assert "all 3 sweep candidates of sl already have a decision" in run(
        "sweep", "confirm", "--policy", "sl", "--undecided").output
    assert decisions_in_history("review") == {gone}


def test_sweep_confirm_without_candidates(env):
    out = run("sweep", "confirm", "--policy", "nothing").output
    assert "no sweep candidates for nothing" in out
    res = last_json(run("sweep", "confirm", "--policy", "nothing", "--json").stdout)
    assert res["decisions"] == [] and res["summary"]["candidates"] == 0
