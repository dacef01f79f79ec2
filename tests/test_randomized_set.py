"""The randomized layout generator (ops.synthetic.randomized) and the scorer's training (indexer.layout.train).

The generator is judged on what issue 19 asks of it: every parameter drawn from a wide range, so that
no choice of the recipe can become a rule of the detector. Specs are drawn without media (ffmpeg's own
sources only) so these run anywhere; rendering is checked on a few small videos.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from indexer.layout import LAYOUTS
from ops.synthetic.randomized import (
    FAMILIES,
    MULTI_FAMILIES,
    SINGLE_FAMILIES,
    build_set,
    draw_spec,
    plan_set,
    render,
    source_pool,
)

POOL = source_pool(None, "dev")  # generated sources only: no media needed


@pytest.fixture(scope="module")
def specs():
    return [draw_spec(7, i, fam, POOL) for fam in FAMILIES for i in range(60)]


def test_every_family_gives_its_label_and_regions_inside_the_canvas(specs):
    for s in specs:
        assert s.label in LAYOUTS
        assert (s.label == "single_scene") == (s.family in SINGLE_FAMILIES), s.name
        W, H = s.canvas
        assert W % 2 == 0 and H % 2 == 0
        for x, y, w, h in s.regions:
            assert 0 <= x and 0 <= y and x + w <= W and y + h <= H and w > 0 and h > 0, (s.name, s.regions)
        n = len(s.regions)
        assert n == 1 if s.family in SINGLE_FAMILIES else n >= 2, (s.name, n)


def test_canvases_durations_rates_and_encodes_vary(specs):
    aspects = Counter(round(s.canvas[0] / s.canvas[1], 2) for s in specs)
    assert {0.56, 1.78, 1.0, 0.8} <= set(aspects), aspects
    shorts = {min(s.canvas) for s in specs}
    assert min(shorts) <= 480 and max(shorts) >= 1080
    durs = [s.duration for s in specs]
    assert min(durs) < 4 and max(durs) > 30 and all(3 <= d <= 60 for d in durs)
    assert {24, 60} <= {s.fps for s in specs}
    assert len({s.crf for s in specs}) >= 5 and any(s.rescale for s in specs) and any(not s.rescale for s in specs)


def test_insets_sit_anywhere_at_many_sizes(specs):
    """Corners, edges and the middle; 10-45 % of the short side: no position or size is the rule."""
    insets = [s for s in specs if s.family == "inset"]
    far_from_corners, sizes, borders = 0, [], set()
    for s in insets:
        W, H = s.canvas
        x, y, w, h = s.regions[1]
        sizes.append(min(w, h) / min(W, H))
        # distance of the inset's nearest corner from the canvas corner it is nearest to, as a share of the short side
        gap = min(math.hypot(cx - ox, cy - oy) for cx, cy in ((x, y), (x + w, y), (x, y + h), (x + w, y + h))
                  for ox, oy in ((0, 0), (W, 0), (0, H), (W, H))) / min(W, H)
        far_from_corners += gap > 0.15
        borders.add(s.placements[1].border > 0)
    assert far_from_corners >= len(insets) // 3, far_from_corners
    assert min(sizes) < 0.12 and max(sizes) > 0.3, (min(sizes), max(sizes))
    assert borders == {True, False}
    assert any(s.placements[1].radius for s in insets) and any(s.placements[1].shadow for s in insets)


def test_splits_are_uneven_and_bars_vary(specs):
    stacks = [s for s in specs if s.family == "stack"]
    firsts = [s.regions[0][3] / s.canvas[1] for s in stacks if len(s.regions) == 2]
    assert min(firsts) < 0.4 and max(firsts) > 0.6, firsts
    gaps = {s.regions[1][1] - (s.regions[0][1] + s.regions[0][3]) for s in stacks}
    assert 0 in gaps and max(gaps) >= 24, gaps
    assert Counter(len(s.regions) for s in stacks).keys() >= {2, 3}


def test_overlays_fall_on_single_feeds_and_composites(specs):
    with_ov = Counter(s.family for s in specs if s.overlays)
    assert any(with_ov[f] for f in MULTI_FAMILIES) and any(with_ov[f] for f in SINGLE_FAMILIES)
    kinds = {o["kind"] for s in specs for o in s.overlays}
    assert {"caption", "sticker", "emoji", "watermark", "progress", "subtitles"} <= kinds


def test_specs_are_deterministic_and_plans_keep_their_prefix():
    a = plan_set(40, 3, POOL)
    b = plan_set(60, 3, POOL)
    assert [s.to_dict() for s in a] == [s.to_dict() for s in b[:40]]
    assert {s.family for s in b} >= {"stack", "inset", "plain"}


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="unknown family 'diagonal'"):
        draw_spec(0, 0, "diagonal", POOL)


def _small(s, seconds: float = 1.5):
    """The same composition, short and at half size (the test renders in seconds)."""
    W, H = s.canvas
    k = 0.5
    pl = [dataclasses.replace(p, rect=tuple(int(v * k) // 2 * 2 for v in p.rect),
                              border=p.border // 2 // 2 * 2, radius=p.radius // 2, shadow=p.shadow // 2)
          for p in s.placements]
    ov = [o for o in s.overlays if o["kind"] != "subtitles"]
    return dataclasses.replace(s, canvas=(int(W * k) // 2 * 2, int(H * k) // 2 * 2), duration=seconds, fps=24,
                               placements=pl, overlays=ov)


def _probe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=width,height:format=duration", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    d = json.loads(out)
    return {"w": d["streams"][0]["width"], "h": d["streams"][0]["height"], "d": float(d["format"]["duration"])}


@pytest.mark.parametrize("family", ["inset", "stack", "blur_fill", "caption_canvas", "screen_cam"])
def test_render_gives_the_canvas_and_the_duration(tmp_path, family):
    s = _small(draw_spec(11, 0, family, POOL))
    out = tmp_path / f"{s.name}.mp4"
    render(s, out)
    got = _probe(out)
    assert (got["w"], got["h"]) == s.canvas
    assert abs(got["d"] - s.duration) < 0.2
    assert not list(tmp_path.glob(".*")), "render leaves no temporary files"


def test_build_set_reports_a_video_it_cannot_render_and_keeps_the_rest(tmp_path, monkeypatch):
    import ops.synthetic.randomized as R

    real = R.render
    calls = []

    def flaky(spec, out, **kw):
        calls.append(spec.name)
        if len(calls) == 2:
            raise RuntimeError(f"{out.name}: ffmpeg failed: simulated")
        return real(_small(spec, 1.0), out, **kw)

    monkeypatch.setattr(R, "render", flaky)
    logs: list[str] = []
    labels = build_set(tmp_path / "set", None, n=3, seed=5, log=logs.append)
    rows = labels.read_text().splitlines()
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    assert len(rows) == 3 and len(manifest["videos"]) == 2
    assert list(manifest["failed"]) == [calls[1]] and "simulated" in manifest["failed"][calls[1]]
    assert any("failed" in m and "simulated" in m for m in logs)
    for v in manifest["videos"]:
        assert {"name", "family", "label", "regions", "canvas", "sources"} <= set(v)
    # a rerun renders only what is missing
    calls.clear()
    build_set(tmp_path / "set", None, n=3, seed=5, log=logs.append)
    assert len(calls) == 1


# ------------------------------------------------------------------------------------ the scorer's training

def test_exported_trees_answer_as_scikit_learn_does():
    """The scorer runs without scikit-learn: its arrays must give the library's probabilities exactly."""
    pytest.importorskip("sklearn")
    from sklearn.ensemble import GradientBoostingClassifier

    from indexer.layout.scorer import TreeEnsemble
    from indexer.layout.train import export

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 5)).astype(np.float32)
    y = ((X[:, 0] + 0.5 * X[:, 1] ** 2 - X[:, 2] * X[:, 3]) > 0.3).astype(int)
    model = GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=0).fit(X, y)
    ens = TreeEnsemble(export(model, [f"f{i}" for i in range(5)], 0.5))
    Xt = rng.normal(size=(300, 5)).astype(np.float32)
    assert np.allclose(ens.prob(Xt), model.predict_proba(Xt)[:, 1], atol=1e-9)


def test_labels_of_candidates_follow_the_feeds():
    from indexer.layout.train import inset_label, seam_label

    stack = {"label": "vertical", "canvas": [100, 200], "regions": [[0, 0, 100, 90], [0, 100, 100, 100]]}
    between = {"size": [100, 200], "box": [0, 0, 100, 200], "axis": 1, "pos": 95}
    assert seam_label(stack, between) == 1  # within the bar between the feeds
    assert seam_label(stack, {**between, "pos": 40}) == 0  # inside a feed
    assert seam_label(stack, {**between, "axis": 2, "pos": 50}) == 0  # across both feeds
    # one feed under a caption band: its top edge is a cut (the band is dropped as chrome afterwards)
    band = {"label": "single_scene", "canvas": [100, 200], "regions": [[0, 50, 100, 150]]}
    assert seam_label(band, {**between, "pos": 50}) == 1
    assert seam_label(band, {**between, "pos": 199}) == 0  # the canvas border is no cut
    # a line that runs along a feed's edge for only part of its length is not that edge
    side_in_portrait = {"label": "horizontal", "canvas": [100, 200], "regions": [[0, 80, 50, 40], [50, 80, 50, 40]]}
    assert seam_label(side_in_portrait, {"size": [100, 200], "box": [0, 0, 100, 200], "axis": 2, "pos": 50}) == 0
    assert seam_label(side_in_portrait, {"size": [100, 200], "box": [0, 80, 100, 120], "axis": 2, "pos": 50}) == 1
    pip = {"label": "picture-in-picture", "canvas": [200, 100], "regions": [[0, 0, 200, 100], [120, 50, 60, 40]]}
    assert inset_label(pip, {"size": [200, 100], "rect": [121, 51, 179, 89]}) == 1
    assert inset_label(pip, {"size": [200, 100], "rect": [10, 10, 60, 40]}) == 0


def test_thresholds_hold_the_false_positive_budget():
    from indexer.layout.train import _threshold

    probs = np.array([0.9, 0.2, 0.3, 0.1, 0.95, 0.4])
    video = np.array([0, 0, 1, 2, 3, 4])
    single = np.array([True, True, True, True, False, True])
    thr = _threshold(probs, video, single, fpr=0.0)
    assert thr > 0.9  # the worst single-feed video (0.9) stays under
    thr = _threshold(probs, video, single, fpr=0.25)  # one of four single-feed videos may pass
    assert 0.4 < thr <= 0.41


def test_cli_builds_trains_and_judges_families_held_out(tmp_path, monkeypatch):
    """The commands end to end on a tiny set (small, short renders): build, train a scorer file the
    detector loads, judge each family with a scorer trained without it."""
    pytest.importorskip("sklearn")
    from click.testing import CliRunner

    import ops.synthetic.randomized as R
    from indexer.layout.scorer import load_scorer
    from ops.cli.main import cli

    real = R.render
    monkeypatch.setattr(R, "render", lambda spec, out, **kw: real(_small(spec, 2.0), out, **kw))
    runner = CliRunner()
    sets = {}
    for name, seed in (("train", 21), ("eval", 22)):
        sets[name] = tmp_path / name
        res = runner.invoke(cli, ["eval", "build-layout-set", str(sets[name]), "--media-dir", str(tmp_path / "none"),
                                  "--count", "6", "--seed", str(seed), "--families", "stack,inset,plain",
                                  "--workers", "1"], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        assert "only generated sources" in res.output
    bad = runner.invoke(cli, ["eval", "build-layout-set", str(tmp_path / "x"), "--families", "stack,diagonal"])
    assert bad.exit_code != 0 and "unknown families ['diagonal']" in bad.output

    out = tmp_path / "scorer.json"
    res = runner.invoke(cli, ["eval", "train-layout", str(sets["train"]), "--out", str(out), "--workers", "1"],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    scorer = load_scorer(str(out))
    assert scorer is not None and scorer.meta["videos"] == 6
    assert scorer.meta["sets"][0] == {"name": "train", "generator": "randomized", "seed": 21, "pool": "dev",
                                      "videos": 6}
    assert (sets["train"] / "layout_candidates.json").is_file()  # traced once, kept beside the set

    res = runner.invoke(cli, ["eval", "layout-heldout", "--train", str(sets["train"]), "--eval", str(sets["eval"]),
                              "--workers", "1", "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert {f.split("/")[0] for f in rep["families"]} <= {"stack", "inset", "plain"} and rep["pooled"]["n"] == 6
    for r in rep["families"].values():
        assert 0.0 <= r["one_vs_several"] <= 1.0 and sum(r["predicted"].values()) == r["n"]

    res = runner.invoke(cli, ["eval", "layout", str(sets["eval"]), "--json", "--resamples", "100", "--workers", "1"],
                        catch_exceptions=False)
    rep = json.loads(res.stdout)
    assert set(rep["by_family"]) <= {"stack", "inset", "plain"} and "generated" in rep["by_source"]


def test_insets_are_held_out_by_where_they_sit():
    from indexer.layout.train import placement, split_of

    def pip(x, y, w=20, h=20):
        return {"label": "picture-in-picture", "family": "inset", "canvas": [200, 400],
                "regions": [[0, 0, 200, 400], [x, y, w, h]]}

    assert placement(pip(4, 4)) == "corner" and placement(pip(176, 376)) == "corner"
    assert placement(pip(90, 4)) == "edge" and placement(pip(4, 190)) == "edge"
    assert placement(pip(90, 190)) == "middle"
    assert split_of(pip(90, 190)) == "inset/middle"
    assert split_of({"label": "vertical", "family": "stack"}) == "stack"


@pytest.mark.parametrize("base,inset,rect,border", [
    ("mandelbrot", "plasma", (150, 40, 240, 180), 0),  # centred under the top edge
    ("life", "testsrc2", (40, 640, 200, 150), 4),  # 15 % up from the bottom edge, bordered
    ("life", "testsrc2", (170, 400, 200, 160), 0),  # in the middle
], ids=["top-centre", "bottom-15pc", "middle"])
def test_insets_away_from_the_corners_are_found(tmp_path, base, inset, rect, border):
    """The first detector saw insets only within 10 % of two borders (where its recipe put them all)."""
    from indexer.layout import analyze_layout
    from indexer.layout.train import _iou
    from ops.synthetic.randomized import Placement, Source, Spec

    W, H = 540, 960
    spec = Spec("case", "inset", "picture-in-picture", (W, H), 25, 3.0, 23, "black",
                [Placement(Source("gen", base, "generated"), (0, 0, W, H), seed=1),
                 Placement(Source("gen", inset, "generated"), rect, seed=2, border=border)])
    out = tmp_path / "inset.mp4"
    render(spec, out)
    r = analyze_layout(out)
    assert r.layout == "picture-in-picture", r.evidence
    x, y, w, h = rect
    bx, by, bw, bh = r.regions[1]
    assert _iou((bx, by, bx + bw, by + bh), (x, y, x + w, y + h)) >= 0.8, r.regions
