"""Pairs, contrastive fine-tuning and retrieval recall (``sludge encoder``).

The model is the repository's ``sludge-tiny`` open_clip config built with seeded random weights (no
pretrained weights can be had here); fine-tuning it on a learnable toy task shows the loop trains,
keeps its best epoch and writes a checkpoint that the encoder loads by path and embeds with exactly
as it was measured.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from indexer.encoders.pairs import Pair, assign_splits, load_pictures, read_pairs, read_seed_pairs, write_pairs
from indexer.encoders.retrieval import best_ranks, recall_report

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30),
           "black": (10, 10, 10), "white": (245, 245, 245)}


def _image(rgb, seed: int, size: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(rgb)[None, None, :] + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


@pytest.fixture(scope="module")
def colour_pairs(tmp_path_factory) -> Path:
    """Colour-name texts with noisy swatches: 6 texts, 10 swatches each, every split represented."""
    d = tmp_path_factory.mktemp("pairs")
    lines = []
    for name, rgb in COLOURS.items():
        for k in range(10):
            f = d / f"{name}{k}.png"
            _image(rgb, hash((name, k)) % 2**32).save(f)
            split = "train" if k < 7 else "val" if k < 9 else "test"
            lines.append({"image": f.name, "text": f"a plain {name} picture", "split": split, "group": f"{name}{k}"})
    (d / "pairs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return d / "pairs.jsonl"


def test_recall_counts_a_hit_when_any_partner_is_in_the_top_k():
    # 3 pictures, 2 texts: pictures 0 and 1 belong to text 0, picture 2 to text 1.
    img = np.eye(3, dtype=np.float32)
    txt = np.array([[0, 1, 0], [1, 0, 0]], dtype=np.float32)  # text 0 is picture 1's, text 1 is picture 0's
    links = [[0], [0], [1]]
    r = recall_report(img, txt, links, resamples=100)
    # picture 0 ranks text 1 first (wrong), picture 1 text 0 (right), picture 2 scores both 0 (tie: a hit).
    assert r.recall["i2t@1"] == pytest.approx(2 / 3)
    # text 0: picture 1 (its partner) first; text 1: picture 0 first (not its partner: picture 2 ties last).
    assert r.recall["t2i@1"] == pytest.approx(1 / 2)
    assert r.recall["t2i@5"] == 1.0 and r.recall["i2t@5"] == 1.0
    assert best_ranks(np.array([[0.1, 0.9, 0.5]]), [[0]]).tolist() == [2]
    assert r.ci["i2t@1"][0] <= r.recall["i2t@1"] <= r.ci["i2t@1"][1]


def test_batches_never_hold_a_text_or_a_picture_twice_and_use_every_pair():
    from indexer.encoders.finetune import _batches

    rng = np.random.default_rng(0)
    texts = np.repeat(np.arange(40), 4)  # 40 captions, 4 frames each (as a generated set gives)
    pictures = np.arange(160)
    pictures[5] = pictures[6]  # one picture under two texts
    batches = _batches(texts, pictures, 16, rng)
    used = [i for b in batches for i in b]
    assert sorted(used) == list(range(160))  # every pair once (no batch left with a single pair here)
    for b in batches:
        assert 2 <= len(b) <= 16
        assert len(set(texts[b])) == len(b) and len(set(pictures[b])) == len(b)


def test_pairs_file_reports_each_bad_line_and_keeps_the_rest(tmp_path):
    good = tmp_path / "a.png"
    _image((1, 2, 3), 0).save(good)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    lines = [
        json.dumps({"image": "a.png", "text": "fine"}),
        "{not json",
        json.dumps({"image": "a.png", "text": "   "}),
        json.dumps({"image": "a.png", "text": "x" * 3000}),
        json.dumps({"video": "v.mp4", "text": "no time"}),
        json.dumps({"image": "a.png", "text": "bad split", "split": "dev"}),
        json.dumps({"text": "no picture"}),
        json.dumps({"image": "missing.png", "text": "gone"}),
        json.dumps({"image": "broken.png", "text": "unreadable"}),
        json.dumps({"video": "missing.mp4", "ts": 1.0, "text": "gone video"}),
    ]
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n")
    pairs, errors = read_pairs(tmp_path / "p.jsonl")
    reasons = [e.reason for e in errors]
    assert [e.where for e in errors] == ["p.jsonl:2", "p.jsonl:3", "p.jsonl:4", "p.jsonl:5", "p.jsonl:6", "p.jsonl:7"]
    assert "not JSON" in reasons[0] and "empty" in reasons[1] and "3000 characters" in reasons[2]
    assert "needs ts" in reasons[3] and "'dev'" in reasons[4] and "no picture" in reasons[5]
    assert [p.text for p in pairs] == ["fine", "gone", "unreadable", "gone video"]
    pictures, picture_errors = load_pictures(pairs)
    assert list(pictures) == [f"image:{good}"]
    msgs = sorted(str(e) for e in picture_errors)
    assert any("missing.png does not exist" in m for m in msgs)
    assert any("broken.png cannot be read" in m for m in msgs)
    assert any("missing.mp4 does not exist" in m for m in msgs)


def test_video_pairs_decode_their_frame_once_per_video(clip_a, tmp_path):
    pairs = [Pair(text="t", video=str(clip_a), ts=t, where=f"x:{i}") for i, t in enumerate((0.5, 2.0, 2.0, 9.0))]
    pictures, errors = load_pictures(pairs)
    assert len(pictures) == 2  # 0.5 and 2.0; the repeated time is one picture
    assert [e.where for e in errors] == ["x:3"] and "past the end" in errors[0].reason


def test_seed_format_tsv_and_jsonl(tmp_path):
    buf = io.BytesIO()
    _image((200, 0, 0), 1).save(buf, format="JPEG")
    b64 = base64.b64encode(buf.getvalue()).decode()
    (tmp_path / "imgs.tsv").write_text(f"1000002\t{b64}\n1000003\tnot-base64!!\n1000004\n")
    (tmp_path / "texts.jsonl").write_text(
        json.dumps({"text_id": 8428, "text": "网址QQ黑产广告", "image_ids": [1000002, 99]}) + "\n"
        + json.dumps({"text_id": 8429, "text": "", "image_ids": [1000002]}) + "\n")
    pairs, errors = read_seed_pairs(tmp_path / "imgs.tsv", tmp_path / "texts.jsonl")
    assert [(p.text, p.image_id) for p in pairs] == [("网址QQ黑产广告", "1000002")]
    msgs = [str(e) for e in errors]
    assert any("imgs.tsv:2" in m and "base64" in m for m in msgs)
    assert any("imgs.tsv:3" in m for m in msgs)
    assert any("image 99 is not in imgs.tsv" in m for m in msgs)
    assert any("texts.jsonl:2" in m and "empty" in m for m in msgs)
    pictures, errs = load_pictures(pairs)
    assert not errs and pictures["id:1000002"].size == (48, 48)


def test_splits_keep_a_source_in_one_split_and_are_stable():
    pairs = [Pair(text=f"t{i % 7}", image=f"/v/{i // 4}.png", group=f"video{i // 4}") for i in range(400)]
    a = assign_splits(pairs, seed=3)
    by_group: dict[str, set] = {}
    for p in a:
        by_group.setdefault(p.group, set()).add(p.split)
    assert all(len(s) == 1 for s in by_group.values())
    counts = {s: sum(p.split == s for p in a) for s in ("train", "val", "test")}
    assert counts["train"] > counts["val"] > 0 and counts["test"] > 0
    # Adding pairs later leaves the earlier ones where they were.
    b = assign_splits(pairs + [Pair(text="new", image="/v/new.png")], seed=3)
    assert [p.split for p in b[:400]] == [p.split for p in a]
    # A split already given is kept.
    assert assign_splits([Pair(text="x", image="/y", split="test")])[0].split == "test"


def test_write_pairs_round_trips_with_relative_paths(tmp_path, colour_pairs):
    pairs, _ = read_pairs(colour_pairs)
    out = colour_pairs.parent / "copy.jsonl"
    assert write_pairs(pairs, out) == len(pairs)
    assert '"image": "red0.png"' in out.read_text()
    again, errors = read_pairs(out)
    assert not errors and [(p.image, p.text, p.split) for p in again] == [(p.image, p.text, p.split) for p in pairs]


def test_finetune_learns_writes_a_checkpoint_that_loads_by_path(colour_pairs, tmp_path):
    from indexer.encoders.finetune import FinetuneConfig, finetune
    from indexer.encoders.openclip import OpenClipEncoder
    from indexer.encoders.retrieval import evaluate
    from indexer.errors import EncoderError

    base = OpenClipEncoder("sludge-tiny", None, random_weights=True, seed=0)
    pairs, _ = read_pairs(colour_pairs)
    pictures, _ = load_pictures(pairs)
    train = [p for p in pairs if p.split == "train"]
    val = [p for p in pairs if p.split == "val"]
    before = evaluate(base, train, pictures, resamples=100)
    events = []
    cfg = FinetuneConfig(epochs=5, frozen_image_epochs=1, batch_size=6, lr=2e-3, warmup_steps=5, patience=5)
    out = tmp_path / "tiny-ft"
    result = finetune(base, train, val, pictures, out, cfg, progress=lambda e, i: events.append((e, i)))
    assert [e for e, _ in events].count("epoch") == len(result.history) >= 2
    assert result.history[0].phase == "text" and result.history[-1].phase == "joint"
    assert all(len(i["val"]) == 7 for e, i in events if e == "epoch")
    assert result.pairs_per_s > 0 and result.model_id.startswith("open_clip/sludge-tiny/file:tiny-ft:")
    assert (out / "open_clip_config.json").is_file() and (out / "open_clip_model.safetensors").is_file()
    meta = json.loads((out / "open_clip_config.json").read_text())["sludge"]
    assert meta["architecture"] == "sludge-tiny" and meta["base_model_id"] == "open_clip/sludge-tiny/random-seed0"
    assert meta["pairs"]["train"]["train"]["pairs"] == len(train)

    loaded = OpenClipEncoder("ViT-B-32", str(out))  # the architecture comes from the folder
    assert loaded.model_id == result.model_id and loaded.dim == 128 and not loaded.random_weights
    after = evaluate(loaded, train, pictures, resamples=100)
    assert after.recall["t2i@1"] > before.recall["t2i@1"]
    assert after.recall["mean"] >= 0.8, after.recall
    # The loaded model embeds as the trained one measured: its best-epoch validation recall again.
    best = result.history[result.best_epoch - 1].val
    assert evaluate(loaded, val, pictures, resamples=100).recall["i2t@5"] == pytest.approx(best["i2t@5"])
    with pytest.raises(EncoderError, match="already exists"):
        finetune(base, train, val, pictures, out, cfg)
    # The OpenVINO runtime converts the fine-tuned model like any other, and embeds as PyTorch does.
    pytest.importorskip("openvino")
    from indexer.encoders.openvino import OpenVinoClipEncoder

    ov = OpenVinoClipEncoder(loaded, precision="fp32", cache_dir=tmp_path / "ov")
    images = [pictures[p.picture] for p in val]
    cos = (ov.embed_images(images) * loaded.embed_images(images)).sum(axis=1)
    assert ov.model_id == loaded.model_id and cos.min() > 0.999


def test_a_checkpoint_folder_that_does_not_load_is_a_clear_error(tmp_path):
    from indexer.encoders.openclip import OpenClipEncoder
    from indexer.errors import EncoderError

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "open_clip_config.json").write_text(json.dumps({"model_cfg": {"embed_dim": 64}}))
    with pytest.raises(EncoderError, match="does not load"):
        OpenClipEncoder("ViT-B-32", str(bad))


def test_cli_eval_and_finetune(cli_env, colour_pairs, tmp_path):
    from ops.cli.main import cli

    runner = CliRunner()
    r = runner.invoke(cli, ["encoder", "finetune", str(colour_pairs), "--model", "sludge-tiny", "--random-weights",
                            "--out", str(tmp_path / "ft"), "--epochs", "2", "--frozen-image-epochs", "1",
                            "--batch-size", "6", "--lr", "2e-3", "--warmup", "2", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["model_id"].startswith("open_clip/sludge-tiny/file:ft:") and doc["best_epoch"] >= 1
    r = runner.invoke(cli, ["encoder", "eval", str(colour_pairs), "--model", "sludge-tiny", "--random-weights",
                            "--checkpoint", str(tmp_path / "ft"), "--split", "all", "--resamples", "100", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert [m["model_id"] for m in doc["models"]][0] == "open_clip/sludge-tiny/random-seed0"
    assert doc["models"][1]["model_id"].startswith("open_clip/sludge-tiny/file:ft:")
    assert doc["pairs"] == 60 and doc["models"][0]["texts"] == 6 and doc["models"][0]["pictures"] == 60
    r = runner.invoke(cli, ["encoder", "eval", str(colour_pairs), "--model", "sludge-tiny", "--random-weights",
                            "--resamples", "100"])
    assert r.exit_code == 0 and "text→image R@5" in r.output


def test_generated_captions_say_the_layout_and_the_feeds_never_a_file_name(shared_media):
    from ops.synthetic.pairs import caption
    from ops.synthetic.randomized import plan_set, source_pool

    specs = [s.to_dict() for s in plan_set(120, 7, source_pool(shared_media, "dev"))]
    words = {"vertical": ("stacked", "one above the other"), "horizontal": ("side by side", "side-by-side", "left to right"),
             "grid": ("grid",), "picture-in-picture": ("picture in picture", "inset", "overlaid"),
             "single_scene": ("single", "one feed only")}
    stems = {Path(p["source"]["ref"]).stem.lower() for s in specs for p in s["placements"] if p["source"]["kind"] in ("clip", "image")}
    assert stems
    for s in specs:
        text = caption(s)
        assert any(w in text for w in words[s["label"]]), (s["label"], text)
        assert not any(stem in text.lower() for stem in stems if len(stem) > 4), text
        assert caption(s) == text and caption(s, seed=1) is not None
        if s["label"] == "picture-in-picture":
            assert any(w in text for w in ("top", "bottom", "left", "right", "middle")), text
        caps = [o["text"] for o in s["overlays"] if o["kind"] == "caption"]
        assert all(f'"{c}"' in text for c in caps)
    assert len({caption(s) for s in specs}) > 80  # wordings and contents vary


def test_bank_pairs_pair_each_picture_with_its_policy_texts(cli_env, clip_a):
    from ops.cli.main import cli

    runner = CliRunner()
    img = cli_env / "shot.png"
    _image((200, 30, 30), 3, size=64).save(img)
    for args in (["--policy", "stacked", "--text", "two feeds stacked"], ["--policy", "stacked", "--image", str(img)],
                 ["--policy", "stacked", "--video", str(clip_a), "--sampler", "uniform:2"],
                 ["--policy", "lonely", "--image", str(img)]):
        r = runner.invoke(cli, ["bank", "add", *args])
        assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["policy", "set", "stacked", "--description", "several unrelated feeds on one screen"])
    assert r.exit_code == 0, r.output
    out = cli_env / "bank_pairs.jsonl"
    r = runner.invoke(cli, ["encoder", "pairs", str(out), "--from-bank"])
    assert r.exit_code == 0, r.output
    assert "lonely" in r.output and "no text exemplar or description" in r.output
    pairs, errors = read_pairs(out)
    assert not errors and {p.policy for p in pairs} == {"stacked"}
    # 1 image + 2 frames, each with the text exemplar and the description
    assert len(pairs) == 6 and {p.text for p in pairs} == {"two feeds stacked", "several unrelated feeds on one screen"}
    assert sum(p.video is not None for p in pairs) == 4 and all(p.ts is not None for p in pairs if p.video)
    assert len(load_pictures(pairs)[0]) == 3
