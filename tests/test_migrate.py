"""``sludge migrate``: the whole loop, pairs → fine-tune → migrate (killed once, resumed) → rollback →
migrate → finish, on the embedded stores and on real Redis + Elasticsearch.

The old model is the session's ViT-B-32 with seeded RANDOM weights (the default configuration in tests);
the new one is the repository's ``sludge-tiny`` fine-tuned here for a few epochs from random weights on
coloured swatches, so that the recall gate has a real difference to see. The kill is a SIGKILL that the
migrating process sends itself right after storing a batch and before moving its cursor (the worst
moment: the resumed run must neither lose nor duplicate that batch).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import ffmpeg
from test_encoder_finetune import COLOURS, _image  # the same noisy colour swatches

SOURCES = ["testsrc2", "mandelbrot", "smptebars", "cellauto"]
FRAMES = 2  # per video (the sampler below)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("migrate_clips")
    for name in SOURCES:
        ffmpeg("-f", "lavfi", "-i", f"{name}=size=128x96:rate=10", "-t", "2", "-c:v", "libx264",
               "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(d / f"{name}.mp4"))
    return d


@pytest.fixture(scope="module")
def swatches(tmp_path_factory) -> Path:
    """Pairs: six colour names, eight noisy swatches each (all in split 'all' use)."""
    d = tmp_path_factory.mktemp("migrate_pairs")
    lines = []
    for name, rgb in COLOURS.items():
        for k in range(8):
            _image(rgb, hash((name, k)) % 2**32, 40).save(d / f"{name}{k}.png")
            lines.append({"image": f"{name}{k}.png", "text": f"a plain {name} picture", "group": f"{name}{k}",
                          "split": "train" if k < 6 else "val"})
    (d / "pairs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return d / "pairs.jsonl"


@pytest.fixture
def env(cli_env, request, monkeypatch):
    monkeypatch.setenv("SLUDGE_TRANSCRIBER__ENABLED", "false")
    monkeypatch.setenv("SLUDGE_INDEX__SAMPLER", f"uniform:{FRAMES}")
    if request.param == "servers":
        redis_url = request.getfixturevalue("redis_url")
        es_url = request.getfixturevalue("es_url")
        prefix = request.getfixturevalue("es_prefix")
        cfg = request.getfixturevalue("redis_config")
        monkeypatch.setenv("SLUDGE_REDIS_URL", redis_url)
        monkeypatch.setenv("SLUDGE_REDIS__INDEX_NAME", cfg.index_name)
        monkeypatch.setenv("SLUDGE_REDIS__KEY_PREFIX", cfg.key_prefix)
        monkeypatch.setenv("SLUDGE_ES_URL", es_url)
        monkeypatch.setenv("SLUDGE_ELASTIC__INDEX_PREFIX", prefix)
        yield request.param
        from search.redis.bank import RedisBank

        with RedisBank(redis_url, cfg) as bank:
            bank.drop()
        return
    yield request.param


def run(*args: str, ok: bool | None = True):
    from ops.cli.main import cli

    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok is not None:
        assert (r.exit_code == 0) == ok, (args, r.exit_code, r.output, r.stderr)
    return r


def last_json(r) -> dict:
    return json.loads(r.stdout.strip().splitlines()[-1])


def generations():
    """(registry, {generation name: (frames stored, distinct frame ids)}) straight from the stores."""
    from ops.config import load_settings
    from search.factory import open_history, read_registry

    s = load_settings()
    url = s.es_url.get_secret_value() if s.es_url else None
    reg = read_registry(es_url=url, elastic=s.elastic, history_dir=s.history_dir, outbox_dir=s.data_dir / "outbox")
    out = {}
    for gen in filter(None, [reg.active, reg.previous, reg.migration.target if reg and reg.migration else None]
                      if reg else []):
        with open_history(es_url=url, elastic=s.elastic, history_dir=s.history_dir, outbox_dir=s.data_dir / "outbox",
                          model_id=gen.model_id, dim=gen.dim, generation=gen) as h:
            h.refresh()
            ids = [i for page in h.export_frames() for i in page.frame_ids]
            out[gen.name] = (h.stats()["frames"], len(set(ids)))
    return reg, out


@pytest.mark.parametrize("env", ["embedded", "servers"], indirect=True)
def test_migrate_whole_loop_with_a_kill(env, clips, swatches, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for f in clips.iterdir():
        (videos / f.name).write_bytes(f.read_bytes())
    run("index", str(videos), "--no-transcribe")
    run("bank", "add", "--policy", "sludge", "--threshold", "0.2", "--text", "two feeds stacked on one screen")
    Image.new("RGB", (64, 48), (200, 40, 40)).save(tmp_path / "ex.png")
    run("bank", "add", "--policy", "sludge", "--image", str(tmp_path / "ex.png"))
    (tmp_path / "ex.png").unlink()  # the bank keeps its own copy, and re-embeds from it
    old_model = last_json(run("bank", "info", "--json"))["model_id"]
    before = json.loads(run("recall", "--query", "two feeds stacked", "--format", "json").stdout)
    assert len(before) == len(SOURCES)

    # pairs → fine-tune → eval
    ft = tmp_path / "tiny-ft"
    run("encoder", "finetune", str(swatches), "--model", "sludge-tiny", "--random-weights", "--out", str(ft),
        "--epochs", "3", "--frozen-image-epochs", "1", "--batch-size", "6", "--lr", "2e-3", "--warmup", "2")
    new_args = ["--model", "sludge-tiny", "--pretrained", str(ft)]

    # a source gone since indexing: its frames come back from the thumbnails
    (videos / "cellauto.mp4").unlink()

    # killed right after storing its first batch, before moving the cursor
    proc = subprocess.run([str(Path(sys.executable).parent / "sludge"), "migrate", *new_args, "--batch", "2"],
                          env={**os.environ, "SLUDGE_FAULTS": "migrate.after_store"}, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    reg, gens = generations()
    assert reg.migration is not None and reg.migration.phase == "history" and reg.migration.cursor is None
    assert gens[reg.migration.target.name][0] == 2 * FRAMES  # the batch is stored (2 videos)
    # the old generation still answers, with the old model
    assert json.loads(run("recall", "--query", "two feeds stacked", "--format", "json").stdout) == before
    status = last_json(run("migrate", "--status", "--json"))
    assert status["state"]["phase"] == "history" and status["active"]["model_id"] == old_model

    # resumed: the gate passes (the fine-tuned model recalls the swatches better), then the switch
    rep = last_json(run("migrate", *new_args, "--batch", "2", "--eval-pairs", str(swatches), "--eval-split", "all",
                        "--json"))
    assert rep["gate"]["passed"] and rep["gate"]["difference"] > 0
    new_model = rep["active"]["model_id"]
    assert new_model.startswith("open_clip/sludge-tiny/file:tiny-ft:") and rep["previous"]["model_id"] == old_model
    assert rep["state"]["from_thumbnails"] == 1 and not rep["state"]["failed"]
    assert rep["bank"]["exemplars"] == 2
    reg, gens = generations()
    assert reg.migration is None and reg.active.model_id == new_model
    frames = len(SOURCES) * FRAMES
    assert gens[reg.active.name] == (frames, frames)  # none lost, none twice
    assert gens[reg.previous.name] == (frames, frames)
    # readers follow the switch: the configuration does not name a model
    assert last_json(run("bank", "info", "--json"))["model_id"] == new_model
    after = json.loads(run("recall", "--query", "two feeds stacked", "--format", "json").stdout)
    assert {h["video_id"] for h in after} == {h["video_id"] for h in before}

    # rollback, and a video indexed meanwhile is carried back
    extra = tmp_path / "extra.mp4"
    ffmpeg("-f", "lavfi", "-i", "life=size=128x96:rate=10", "-t", "2", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", str(extra))
    run("index", str(extra), "--no-transcribe")  # with the new model, into the new generation
    rep = last_json(run("migrate", "--rollback", "--json"))
    assert rep["active"]["model_id"] == old_model and rep["caught_up"] == 1
    assert last_json(run("bank", "info", "--json"))["model_id"] == old_model
    assert len(json.loads(run("recall", "--query", "two feeds stacked", "--format", "json").stdout)) == len(SOURCES) + 1

    # migrate again: the kept generation of the new model is caught up and switched to, then finish
    rep = last_json(run("migrate", *new_args, "--json"))
    assert rep["active"]["model_id"] == new_model and rep["previous"]["model_id"] == old_model
    rep = last_json(run("migrate", "--finish", "--json"))
    assert rep["previous"]["model_id"] == old_model  # the one dropped
    reg, gens = generations()
    assert reg.previous is None and reg.active.model_id == new_model
    assert gens == {reg.active.name: (frames + FRAMES, frames + FRAMES)}
    assert last_json(run("bank", "info", "--json"))["model_id"] == new_model
    assert len(json.loads(run("recall", "--query", "two feeds stacked", "--format", "json").stdout)) == len(SOURCES) + 1
    run("migrate", "--rollback", ok=False)  # nothing kept any more

    # the gate: a model that recalls the pairs worse is refused, with the difference, and nothing starts
    r = run("migrate", "--model", "sludge-tiny", "--random-weights", "--eval-pairs", str(swatches),
            "--eval-split", "all", ok=False)
    assert "refused to switch" in r.output + r.stderr and "mean recall@1/5/10" in r.output + r.stderr
    reg, _ = generations()
    assert reg.migration is None and reg.active.model_id == new_model
