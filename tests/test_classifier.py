"""The confirm model end to end on the tiny configuration (real configs, RANDOM weights, real tokenizer).

One small labelled set from the composite generator (composites = sludge,
single scenes = not) is trained on once per module; the other tests reuse the
trained folder: reload, both loading paths, the stock export, the CLI, the
cascade, and bad input.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")

from classifier.errors import ClassifierError, ManifestError
from classifier.manifest import load_frames, load_manifest
from indexer.sampling import parse_sampler

SAMPLER = "uniform:2"
LAYOUTS = ["vertical", "horizontal", "pip", "grid"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one torch thread. Their ops are too small to gain from threads, and on a shared
    machine a second spinning thread made them about 5x slower (measured)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from ops.synthetic.composite import make_composite, make_single

    d = tmp_path_factory.mktemp("vq_data")
    rows = []
    for i, lay in enumerate(LAYOUTS):
        p = make_composite(d / f"c{i}.mp4", lay, canvas=(144, 256), duration=2.0, fps=10, audio=None, seed=i)
        rows.append({"video": p.name, "label": True, "transcript": "subway surfers gameplay" if i % 2 else None})
    for i in range(4):
        p = make_single(d / f"s{i}.mp4", canvas=(144, 256), duration=2.0, fps=10, audio=None, seed=100 + i)
        rows.append({"video": p.name, "label": False, "transcript": "a cooking video" if i % 2 else None})
    (d / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return d


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    from classifier.train import TrainOptions, train

    rows = load_manifest(dataset / "train.jsonl")
    out = tmp_path_factory.mktemp("vq_model") / "model"
    t0 = time.perf_counter()
    report = train(rows, rows, out, TrainOptions(config="tiny", epochs=8, lr=3e-3, batch_size=8, patience=3,
                                                 sampler=SAMPLER, device="cpu"))
    report.seconds = time.perf_counter() - t0
    return out, report, rows


@pytest.fixture(scope="module")
def model(trained):
    from classifier.load import load_model

    return load_model(str(trained[0]), device="cpu")


@pytest.mark.slow
def test_training_drives_loss_down_and_fits_its_set(trained, model):
    from classifier.evaluate import evaluate

    out, report, rows = trained
    assert report.train_losses[-1] < report.first_step_loss - 0.5
    assert report.val_losses[report.best_epoch - 1] == min(report.val_losses)
    res = evaluate(model, rows, SAMPLER, resamples=200)
    assert res["accuracy"] >= 0.9, res["videos"]
    assert res["frame"]["accuracy"] >= 0.9
    assert set(res) >= {"accuracy", "precision", "recall", "f1", "video", "frame", "unparseable"}
    assert res["video"]["confusion"]["tp"] + res["video"]["confusion"]["fn"] == 4
    lo, hi = res["video"]["ci95"]["accuracy"]
    assert 0.0 <= lo <= res["accuracy"] <= hi <= 1.0
    cfg = json.loads((out / "visual_qwen.json").read_text())
    assert cfg["random_weights"] is True and cfg["config"] == "tiny"
    assert cfg["lora"] == {"r": 32, "alpha": 64, "dropout": 0.1,
                           "targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
    assert cfg["options"]["train_projector"] is False
    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "projector.safetensors").is_file()


def _frames(rows):
    return load_frames(rows, parse_sampler(SAMPLER))


@pytest.mark.slow
def test_reload_gives_identical_answers_and_batching_does_not_change_them(trained, model):
    from classifier.load import load_model

    out, _, rows = trained
    decoded = _frames(rows[:3] + rows[-2:])
    videos = [(r.path, ims, ts, r.transcript) for r, ims, ts in decoded]
    a = model.classify_batch(videos)
    again = load_model(str(out), device="cpu").classify_batch(videos)
    assert [[f.text for f in r.frames] for r in a] == [[f.text for f in r.frames] for r in again]
    one_by_one = [model.classify_batch([v])[0] for v in videos]
    assert [[f.text for f in r.frames] for r in a] == [[f.text for f in r.frames] for r in one_by_one]
    # the Q-Former ran once per frame: the second pass came from the cache
    assert model.cache.hits >= sum(len(v[1]) for v in videos)


@pytest.mark.slow
def test_export_path_matches_component_path_and_runs_stock(trained, model, tmp_path):
    import torch
    from transformers import Blip2ForConditionalGeneration

    from classifier.load import export_single_model, load_export, load_model

    _, _, rows = trained
    export = export_single_model(model, tmp_path / "export")
    assert json.loads((export / "config.json").read_text())["model_type"] == "blip-2"
    ex = load_model(str(export), device="cpu")
    assert ex.source["kind"] == "export"
    decoded = _frames(rows)
    videos = [(r.path, ims, ts, r.transcript) for r, ims, ts in decoded]
    comp = model.classify_batch(videos)
    exp = ex.classify_batch(videos)
    assert [r.vote.sludge for r in comp] == [r.vote.sludge for r in exp]
    assert [[f.answer for f in r.frames] for r in comp] == [[f.answer for f in r.frames] for r in exp]
    # the export runs with no custom code: stock generate() gives the same words for a frame
    stock = Blip2ForConditionalGeneration.from_pretrained(str(export)).eval()
    ims, tr = videos[0][1], videos[0][3]
    ids = torch.tensor([model.prompt_ids(tr)])
    px = model.preprocess(ims[:1])
    out = stock.generate(pixel_values=px, input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                         do_sample=False, eos_token_id=model.stop_ids, pad_token_id=model.pad_id)
    text = ex.tokenizer.decode(out[0][ids.shape[1]:], skip_special_tokens=True).strip()
    assert text == comp[0].frames[0].text
    assert isinstance(load_export(str(export), device="cpu"), type(model))


@pytest.mark.slow
def test_adapter_for_another_base_model_is_refused(trained, tmp_path):
    from transformers import Qwen3ForCausalLM

    from classifier.load import load_components
    from classifier.tiny import tiny_qwen3_config

    out, _, _ = trained
    cfg = tiny_qwen3_config(num_hidden_layers=3)
    other = tmp_path / "other_qwen"
    Qwen3ForCausalLM(cfg).save_pretrained(other)
    with pytest.raises(ClassifierError, match="another base model"):
        load_components(str(out / "base/blip2"), str(out / "projector.safetensors"), str(other),
                        str(out / "adapter"), tokenizer=str(out / "base/qwen3"), device="cpu")
    with pytest.raises(ClassifierError, match="not a LoRA adapter"):
        load_components(str(out / "base/blip2"), str(out / "projector.safetensors"), str(out / "base/qwen3"),
                        str(tmp_path), device="cpu")


def test_manifest_errors(tmp_path, dataset):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ManifestError, match="empty"):
        load_manifest(empty)
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"video": str(dataset / "c0.mp4"), "label": "yes"}) + "\n")
    with pytest.raises(ManifestError, match=r"m.jsonl:1: label must be a JSON boolean"):
        load_manifest(m)
    m.write_text(json.dumps({"video": str(tmp_path / "nope.mp4"), "label": True}) + "\n")
    with pytest.raises(ManifestError, match="does not exist"):
        load_manifest(m)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00not a video" * 100)
    m.write_text(json.dumps({"video": str(bad), "label": True}) + "\n")
    rows = load_manifest(m)
    with pytest.raises(ManifestError, match=r"m.jsonl:1"):
        load_frames(rows, parse_sampler("uniform:1"))
    badimg = tmp_path / "bad.jpg"
    badimg.write_bytes(b"garbage" * 10)
    m.write_text(json.dumps({"frame": str(badimg), "label": False}) + "\n")
    with pytest.raises(ManifestError, match="not a readable image"):
        load_frames(load_manifest(m), parse_sampler("uniform:1"))


def test_seed_split_and_llava_formats(tmp_path, dataset):
    root = tmp_path / "ds"
    (root / "Sludge_Batch_1").mkdir(parents=True)
    (root / "transcripts").mkdir()
    shutil.copy(dataset / "c0.mp4", root / "Sludge_Batch_1" / "7156.mp4")
    (root / "transcripts" / "7156.json").write_text(json.dumps({"text": " hello there"}))
    split = tmp_path / "test.json"
    split.write_text(json.dumps([{"id": "7156", "classification": True, "batch_name": "Sludge_Batch_1"}]))
    (row,) = load_manifest(split, media_root=root)
    assert row.kind == "video" and row.label is True and row.transcript == " hello there"
    split.write_text(json.dumps([{"id": "7156", "classification": "sludge", "batch_name": "Sludge_Batch_1"}]))
    with pytest.raises(ManifestError, match="classification must be a JSON boolean"):
        load_manifest(split, media_root=root)
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "f.jpg")
    llava = tmp_path / "llava.json"
    llava.write_text(json.dumps([{"id": "x", "image": "f.jpg", "conversations": [
        {"from": "human", "value": "Audio transcript: la la\n<image>\nIs this sludge?"},
        {"from": "gpt", "value": "No."}]}]))
    (r,) = load_manifest(llava)
    assert (r.kind, r.label, r.transcript) == ("frame", False, "la la")


@pytest.mark.slow
def test_cli_classify_and_eval(trained, dataset, monkeypatch):
    from click.testing import CliRunner

    from ops.cli.main import cli

    out, _, _ = trained
    monkeypatch.setenv("SLUDGE_CLASSIFIER__MODEL", str(out))
    monkeypatch.setenv("SLUDGE_CLASSIFIER__DEVICE", "cpu")
    monkeypatch.setenv("SLUDGE_CLASSIFIER__SAMPLER", SAMPLER)
    monkeypatch.setenv("SLUDGE_TRANSCRIBER__ENABLED", "false")
    runner = CliRunner()
    r = runner.invoke(cli, ["classify", str(dataset / "c0.mp4"), str(dataset / "s0.mp4"), "--json"])
    assert r.exit_code == 0, r.output
    docs = json.loads(r.stdout.strip().splitlines()[-1])
    assert [d["verdict"] for d in docs] == ["sludge", "not_sludge"]
    assert docs[0]["vote"]["frames"] == 2 and docs[0]["random_weights"] is True
    assert {f["answer"] for f in docs[0]["frames"]} <= {"yes", "no", "unparseable"}
    r = runner.invoke(cli, ["classify", str(dataset / "missing.mp4"), "--json"])
    assert r.exit_code == 1
    r = runner.invoke(cli, ["classifier", "eval", "--model", str(out), "--manifest", str(dataset / "train.jsonl"),
                            "--sampler", SAMPLER, "--resamples", "50", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"accuracy", "precision", "recall", "f1"} <= set(res) and res["accuracy"] >= 0.9


def test_cli_train_refuses_bad_manifest(tmp_path):
    from click.testing import CliRunner

    from ops.cli.main import cli

    m = tmp_path / "m.jsonl"
    m.write_text("")
    r = CliRunner().invoke(cli, ["classifier", "train", "--manifest", str(m), "--val", str(m),
                                 "--output", str(tmp_path / "o"), "--config", "tiny"])
    assert r.exit_code == 1 and "empty" in r.output


@pytest.mark.slow
def test_cascade_stages(trained, dataset, model):
    from classifier.cascade import Cascade
    from search.verdict import FrameMatch, PolicyVerdict

    calls = []

    def factory():
        calls.append(1)
        return model

    c = Cascade(factory, sampler=parse_sampler(SAMPLER), band=(-0.05, 0.10), transcript_terms=("subway surfers",))
    pv = lambda s, matches=(): PolicyVerdict("sludge", "candidate" if s >= 0.25 else "clear", s, 0.25, "best",
                                              1, 2, list(matches))
    clear = c.decide(str(dataset / "s0.mp4"), [pv(0.05)])
    assert (clear.verdict, clear.stage, clear.cost["model_calls"]) == ("clear", 1, 0) and not calls
    sure = c.decide(str(dataset / "c0.mp4"), [pv(0.5)])
    assert (sure.verdict, sure.stage) == ("sludge", 1)
    dup = c.decide(str(dataset / "c0.mp4"), [pv(0.1, [FrameMatch(0.5, "e1", "image", "x.png", 1.0, "pdq")])])
    assert dup.stage == 1 and "PDQ" in dup.reason
    assert not calls  # nothing so far needed the model
    band = c.decide(str(dataset / "c0.mp4"), [pv(0.27)])
    assert band.stage == 2 and band.verdict == "sludge" and band.cost["model_calls"] == 2 and calls
    assert band.confirm["vote"]["frames"] == 2 and band.cost["seconds"]["stage2"] > 0
    lay = c.decide(str(dataset / "s1.mp4"), [], layout={"multi_feed": True, "n_feeds": 2})
    assert lay.stage == 2 and "layout" in lay.reason and lay.verdict in ("clear", "sludge", "review")
    hit = c.decide(str(dataset / "s0.mp4"), [], transcript="lol Subway Surfers clip")
    assert hit.stage == 2 and hit.evidence["transcript_hits"] == ["subway surfers"]
    many = c.decide_many([__import__("classifier.cascade", fromlist=["x"]).CascadeInput(str(dataset / f"c{i}.mp4"),
                                                                                      [pv(0.26)]) for i in range(3)])
    assert [d.stage for d in many] == [2, 2, 2]
    gone = c.decide(str(dataset / "missing.mp4"), [pv(0.27)])
    assert (gone.verdict, gone.stage, gone.cost["model_calls"]) == ("review", 2, 0) and "could not read" in gone.reason
    json.dumps([d.to_dict() for d in many])


def test_unreachable_production_weights_fail_clearly(tmp_path):
    from classifier.load import load_model
    from indexer.encoders.blip2 import load_vision_stack
    from indexer.errors import WeightsUnavailableError

    with pytest.raises(ClassifierError, match="could not be loaded"):
        load_model("alpharomercoma/vqwen-qformer-tiktok-v2", device="cpu")
    with pytest.raises(WeightsUnavailableError, match="local checkpoint folder"):
        load_vision_stack("Salesforce/blip2-opt-2.7b", device="cpu")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ClassifierError, match="neither a trained classifier folder"):
        load_model(str(tmp_path), device="cpu")


@pytest.mark.slow
def test_cli_train_tiny_writes_a_loadable_folder(dataset, tmp_path):
    from click.testing import CliRunner

    from ops.cli.main import cli

    m = tmp_path / "m.jsonl"
    m.write_text("\n".join(json.dumps({"video": str(dataset / n), "label": y})
                           for n, y in (("c0.mp4", True), ("s0.mp4", False))) + "\n")
    out = tmp_path / "model"
    r = CliRunner().invoke(cli, ["classifier", "train", "--manifest", str(m), "--val", str(m), "--output", str(out),
                                 "--config", "tiny", "--sampler", "uniform:1", "--epochs", "1", "--lr", "1e-3",
                                 "--train-projector", "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert rep["best_epoch"] == 1 and rep["frames"] == 2
    cfg = json.loads((out / "visual_qwen.json").read_text())
    assert cfg["options"]["train_projector"] is True and cfg["options"]["lr"] == 1e-3
    r = CliRunner().invoke(cli, ["classifier", "train", "--manifest", str(m), "--val", str(m), "--output", str(out),
                                 "--config", "tiny"])
    assert r.exit_code == 1 and "not empty" in r.output
