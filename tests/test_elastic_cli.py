"""The CLI on Elasticsearch (SLUDGE_ES_URL set): index → recall (filters, hybrid, image) → sweep → stats."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image
import gc

from test_cli import env, json_lines  # noqa: F401  (env is a fixture)
from test_cli import run as _run


def run(*args, ok=True):
    """test_cli.run, then free the command's encoder at once: each CLI run loads its own
    (~0.6 GB), and reference cycles through click's context would otherwise keep several alive."""
    try:
        return _run(*args, ok=ok)
    finally:
        gc.collect()


@pytest.fixture
def es_env(env, es_url, es_prefix, monkeypatch):  # noqa: F811
    monkeypatch.setenv("SLUDGE_ES_URL", es_url)
    monkeypatch.setenv("SLUDGE_ELASTIC__INDEX_PREFIX", es_prefix)
    return env


def test_cli_on_elasticsearch(es_env, clip_a, clip_b):
    videos = es_env / "videos"
    videos.mkdir()
    shutil.copy(clip_a, videos / "a.mp4")
    shutil.copy(clip_b, videos / "b.mkv")
    items = json_lines(run("index", str(videos), "--json", "--source", "chan-x", "--no-transcribe").stdout)
    assert sorted(i["status"] for i in items) == ["indexed", "indexed"]
    again = json_lines(run("index", str(videos), "--json").stdout)
    assert sorted(i["status"] for i in again) == ["present", "present"]

    hits = json.loads(run("recall", "--query", "split-screen gameplay", "--format", "json").stdout)
    assert len(hits) == 2 and all(-1 <= h["score"] <= 1 and h["score_kind"] == "cosine" for h in hits)
    assert all(len(h["timestamps"]) == 4 for h in hits)
    assert len(json.loads(run("recall", "--query", "x", "--source", "chan-x", "--decision", "none",
                              "--k", "4", "--num-candidates", "50", "--format", "json").stdout)) >= 1

    # image-to-image: a frame of b.mkv finds b first
    import av

    with av.open(str(videos / "b.mkv")) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="rgb24")
    Image.fromarray(frame).save(es_env / "probe.png")
    top = json.loads(run("recall", "--image", str(es_env / "probe.png"), "--format", "json").stdout)[0]
    assert top["path"].endswith("b.mkv") and top["score"] > 0.8

    # sweep: records candidates, re-running adds nothing
    first = json.loads(run("sweep", "--policy", "gameplay", "--query", "split-screen gameplay",
                           "--min-score", "-1", "--json").stdout)
    assert first["candidates_new"] == 2 and first["complete"]
    second = json.loads(run("sweep", "--policy", "gameplay", "--query", "split-screen gameplay",
                            "--min-score", "-1", "--json").stdout)
    assert second["candidates_new"] == 0
    listed = json.loads(run("sweep", "list", "--policy", "gameplay", "--format", "json").stdout)
    assert len(listed) == 2 and all(c["policy"] == "gameplay" and c["timestamps"] for c in listed)

    stats = json.loads(run("history", "stats", "--json").stdout)
    assert stats["backend"] == "elasticsearch" and stats["videos"] == 2 and stats["frames"] == 8
    assert stats["model_ids"] and stats["segments"] >= 1 and stats["bytes_on_disk"] > 0
    assert "documents" in run("history", "stats").stdout


def test_cli_bad_input_on_elasticsearch(es_env):
    res = run("recall", "--query", "   ", ok=False)
    assert "empty" in res.stderr
    res = run("recall", "--query", "x" * 5000, ok=False)
    assert "5000 characters" in res.stderr
    (es_env / "broken.png").write_bytes(b"not an image at all")
    res = run("recall", "--image", str(es_env / "broken.png"), ok=False)
    assert "broken.png" in res.stderr and "not an image" in res.stderr
    res = run("sweep", "--policy", "p", "--query", "", ok=False)
    assert "empty" in res.stderr


def test_cli_server_down_is_one_clear_line(env, monkeypatch):  # noqa: F811
    from ops.services.base import free_port

    monkeypatch.setenv("SLUDGE_ES_URL", f"http://127.0.0.1:{free_port()}")
    res = run("history", "stats", ok=False)
    assert "unreachable" in res.stderr and "sludge services start es" in res.stderr
    assert "Traceback" not in res.output
