"""Training the layout scorer from videos whose ground truth is known (the randomized generator's).

1. **Candidates.** Every video is analysed with the rules deciding and every candidate seam and
   inset traced with its features (:data:`indexer.layout.features.TRACE`), insets sought anywhere
   (no corner rule), so the scorer sees what it will judge.
2. **Labels**, from the manifest's feed rectangles: a seam candidate is real when it runs along the
   edge of a feed inside the canvas (within ``tol`` analysis pixels, over most of its length): a cut
   between two pictures, whatever is on the other side (another feed, a caption band, a bar, a
   blurred fill); the chrome and fill tests decide afterwards, as without the scorer, what the pieces
   are. An inset candidate is real when it overlaps the inset of a picture-in-picture video
   (IoU ≥ ``iou``).
3. **Trees.** Gradient boosting (scikit-learn, a training-time dependency only) per kind, seeded;
   exported as arrays to ``scorer.json`` (:mod:`indexer.layout.scorer`).
4. **Thresholds**, from out-of-fold probabilities (folds of whole videos): the lowest that leaves at
   most ``fpr`` of the single-feed videos with a false candidate above it, for seams and insets each.

Nothing here knows families or where the generator puts things; held-out evaluation
(:func:`heldout_by_family`) trains without a family and judges the videos of it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from indexer.layout.features import INSET_FEATURES, SEAM_FEATURES, TRACE, vector
from indexer.layout.params import DEFAULT_PARAMS, LayoutParams

#: How candidates are gathered for training: the rules deciding (the scorer judges every candidate,
#: whatever the rules said of it), with wider limits than the detector's own (smaller insets, weaker
#: edges), so the trees see more of what is and is not an inset. The detector runs with the default
#: limits: as wide, it found no more insets on rand_eval (0.48 against 0.52) at 0.6x the speed.
COLLECT_PARAMS = dataclasses.replace(DEFAULT_PARAMS, use_scorer=False, pip_min_side=0.07, pip_min_area=0.004,
                                     pip_edge_ratio=2.5)


def load_manifest(directory: str | Path) -> list[dict]:
    """The videos of a set with their ground truth (``manifest.json`` of ops.synthetic.randomized)."""
    d = Path(directory)
    m = json.loads((d / "manifest.json").read_text())
    videos = m["videos"] if isinstance(m, dict) else m
    for v in videos:
        v["file"] = str(d / f"{v['name']}.mp4")
    return videos


def _collect_one(args: tuple[str, dict]) -> dict:
    from indexer.layout import analyze_layout

    path, params = args
    trace: list = []
    token = TRACE.set(trace)
    try:
        r = analyze_layout(path, LayoutParams(**params))
        return {"path": path, "layout": r.layout, "candidates": trace, "error": None}
    except Exception as e:  # noqa: BLE001 - a video that cannot be analysed is reported, not fatal
        return {"path": path, "layout": None, "candidates": trace, "error": str(e)}
    finally:
        TRACE.reset(token)


def collect(videos: list[dict], params: LayoutParams = COLLECT_PARAMS, workers: int = 2,
            progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Each video analysed with tracing on; the results in order, with the candidates."""
    jobs = [(v["file"], dataclasses.asdict(params)) for v in videos]
    out: list[dict] = []
    if workers > 1:
        with ProcessPoolExecutor(workers) as ex:
            for i, r in enumerate(ex.map(_collect_one, jobs, chunksize=4)):
                out.append(r)
                if progress:
                    progress(i + 1, len(jobs))
    else:
        for i, j in enumerate(jobs):
            out.append(_collect_one(j))
            if progress:
                progress(i + 1, len(jobs))
    return out


# ------------------------------------------------------------------------------------ labels

def _scaled(video: dict, size: list[int]) -> list[tuple[float, float, float, float]]:
    W, H = video["canvas"]
    sx, sy = size[0] / W, size[1] / H
    return [(x * sx, y * sy, (x + w) * sx, (y + h) * sy) for x, y, w, h in video["regions"]]


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def seam_label(video: dict, cand: dict, tol: float = 3.0, span: float = 0.6) -> int:
    """1 when the candidate runs along an edge of a feed inside the canvas over most of its length.

    The scorer answers "is this line a cut between two different pictures", which pixels can tell;
    what the pieces are (a caption band, a bar, the blurred fill of the same feed) is decided after the
    cut, by the chrome and fill tests, as it is without the scorer. A line between a feed and a band is
    therefore a cut; a line inside a feed, or a band's own edge inside a bar, is not.
    """
    regions = _scaled(video, cand["size"])
    W, H = cand["size"]
    x0, y0, x1, y1 = cand["box"]
    pos = cand["pos"]
    horizontal = cand["axis"] == 1  # a line between rows
    lo, hi = (x0, x1) if horizontal else (y0, y1)
    for i, a in enumerate(regions):  # inside a thin bar between two feeds (a divider taken as one line)
        for b in regions[i + 1:]:
            for first, second in ((a, b), (b, a)):
                end, start = (first[3], second[1]) if horizontal else (first[2], second[0])
                ext = ((first[0], first[2]), (second[0], second[2])) if horizontal else \
                    ((first[1], first[3]), (second[1], second[3]))
                if 0 <= start - end <= 12 and end <= pos <= start and \
                        min(_overlap(*e, lo, hi) for e in ext) >= span * (hi - lo):
                    return 1
    for r in regions:
        edges = (r[1], r[3]) if horizontal else (r[0], r[2])
        extent = (r[0], r[2]) if horizontal else (r[1], r[3])
        limit = H if horizontal else W
        for e in edges:
            if e <= tol or e >= limit - tol:  # the canvas border: no cut there
                continue
            if abs(pos - e) <= tol and _overlap(extent[0], extent[1], lo, hi) >= span * (hi - lo):
                return 1
    return 0


def _iou(a, b) -> float:
    ix = _overlap(a[0], a[2], b[0], b[2])
    iy = _overlap(a[1], a[3], b[1], b[3])
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def inset_label(video: dict, cand: dict, iou: float = 0.5) -> int:
    if video["label"] != "picture-in-picture":
        return 0
    regions = _scaled(video, cand["size"])
    inner = min(regions, key=lambda r: (r[2] - r[0]) * (r[3] - r[1]))
    return int(_iou(inner, cand["rect"]) >= iou)


def table(videos: list[dict], results: list[dict]) -> dict[str, dict[str, Any]]:
    """Feature matrices, labels and the video each row belongs to, per kind."""
    out: dict[str, dict[str, list]] = {k: {"X": [], "y": [], "video": [], "single": []} for k in ("seam", "inset")}
    for vi, (v, r) in enumerate(zip(videos, results)):
        for c in r["candidates"]:
            kind = c["kind"]
            names = SEAM_FEATURES if kind == "seam" else INSET_FEATURES
            if kind == "seam":  # traced before the rules' verdict was a feature: it is on the record
                c["features"].setdefault("rules", float(c["rules"]))
            label = seam_label(v, c) if kind == "seam" else inset_label(v, c)
            out[kind]["X"].append(vector(names, c["features"]))
            out[kind]["y"].append(label)
            out[kind]["video"].append(vi)
            out[kind]["single"].append(v["label"] == "single_scene")
    return {k: {"X": np.array(d["X"]).reshape(-1, len(SEAM_FEATURES if k == "seam" else INSET_FEATURES)),
                "y": np.array(d["y"], dtype=int), "video": np.array(d["video"], dtype=int),
                "single": np.array(d["single"], dtype=bool)} for k, d in out.items()}


# ------------------------------------------------------------------------------------ trees

def _fit(X: np.ndarray, y: np.ndarray, seed: int):
    from sklearn.ensemble import GradientBoostingClassifier

    model = GradientBoostingClassifier(n_estimators=120, max_depth=3, learning_rate=0.1, subsample=0.5,
                                       min_samples_leaf=5, random_state=seed)
    model.fit(X, y)
    return model


def export(model, features: list[str], threshold: float) -> dict:
    """A fitted binary GradientBoostingClassifier as plain arrays (see scorer.TreeEnsemble)."""
    prior = model.init_.class_prior_[1] if hasattr(model.init_, "class_prior_") else float(np.mean(model.init_))
    base = math.log(prior / (1 - prior))
    trees = []
    for est in model.estimators_[:, 0]:
        t = est.tree_
        trees.append({"left": t.children_left.tolist(), "right": t.children_right.tolist(),
                      "feature": t.feature.tolist(), "threshold": [float(v) for v in t.threshold],
                      "value": [float(v) for v in t.value[:, 0, 0]]})
    return {"features": features, "base": base, "learning_rate": model.learning_rate, "threshold": threshold,
            "trees": trees}


def _constant(features: list[str], prob: float, threshold: float) -> dict:
    return {"features": features, "base": math.log(max(prob, 1e-6) / max(1 - prob, 1e-6)), "learning_rate": 0.1,
            "threshold": threshold, "trees": []}


def _threshold(probs: np.ndarray, video: np.ndarray, single: np.ndarray, fpr: float,
               y: np.ndarray | None = None) -> float:
    """The lowest threshold that leaves at most ``fpr`` of the single-feed videos with a false candidate
    (labelled 0) above it. A single feed's true cuts (its edge against a caption band) are not counted:
    the chrome test drops what they cut off."""
    worst: dict[int, float] = {}
    real = np.zeros(len(probs), bool) if y is None else y == 1
    for p, v, s, pos in zip(probs, video, single, real):
        if s and not pos:
            worst[v] = max(worst.get(v, 0.0), float(p))
    if not worst:
        return 0.5
    w = np.sort(np.array(list(worst.values())))[::-1]
    k = int(math.floor(fpr * len(w)))  # videos allowed over
    return float(min(0.99, max(0.05, w[k] + 1e-6 if k < len(w) else 0.05)))


def fit_scorer(tab: dict[str, dict[str, Any]], *, seed: int = 0, folds: int = 3, fpr: float = 0.005,
               meta: dict | None = None) -> dict:
    """Trees per kind and thresholds from out-of-fold probabilities (folds of whole videos)."""
    out: dict[str, Any] = {"meta": {"trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seed": seed,
                                    "fpr_per_kind": fpr, **(meta or {})}}
    for kind, names in (("seam", SEAM_FEATURES), ("inset", INSET_FEATURES)):
        d = tab[kind]
        X, y, video, single = d["X"], d["y"], d["video"], d["single"]
        out["meta"][f"{kind}_rows"] = int(len(y))
        out["meta"][f"{kind}_positives"] = int(y.sum())
        if len(y) == 0 or y.sum() < 5 or y.sum() == len(y):
            out[kind] = _constant(names, float(y.mean()) if len(y) else 0.0, 0.99)
            continue
        rng = np.random.default_rng(seed)
        vids = np.unique(video)
        fold_of = dict(zip(vids, rng.integers(0, folds, len(vids))))
        f = np.array([fold_of[v] for v in video])
        oof = np.zeros(len(y))
        for k in range(folds):
            tr, te = f != k, f == k
            if te.any() and y[tr].sum() >= 5:
                oof[te] = _fit(X[tr], y[tr], seed).predict_proba(X[te])[:, 1]
        thr = _threshold(oof, video, single, fpr, y)
        out[kind] = export(_fit(X, y, seed), names, thr)
        out["meta"][f"{kind}_oof_recall_at_threshold"] = float(np.mean(oof[y == 1] >= thr)) if y.sum() else None
    return out


def train(directories: Iterable[str | Path], out: str | Path, *, seed: int = 0, workers: int = 2,
          exclude_families: tuple[str, ...] = (), progress=None, cache: bool = True) -> dict:
    """Collect, label, fit and write a scorer file from one or more randomized sets."""
    directories = list(directories)
    videos, results = [], []
    for d in directories:
        vs, rs = candidates_of(d, workers=workers, progress=progress, cache=cache)
        keep = [i for i, v in enumerate(vs) if v["family"] not in exclude_families]
        videos += [vs[i] for i in keep]
        results += [rs[i] for i in keep]
    tab = table(videos, results)
    scorer = fit_scorer(tab, seed=seed, meta={"sets": [_describe(d) for d in directories], "videos": len(videos),
                                              "excluded_families": list(exclude_families)})
    Path(out).write_text(json.dumps(scorer) + "\n")
    return scorer


def _describe(directory: str | Path) -> dict:
    """What a scorer file says of a set it learned from: how it was built (no paths of this machine)."""
    m = json.loads((Path(directory) / "manifest.json").read_text())
    vids = m["videos"] if isinstance(m, dict) else m
    return {"name": Path(directory).name, "generator": m.get("generator") if isinstance(m, dict) else None,
            "seed": m.get("seed") if isinstance(m, dict) else None,
            "pool": m.get("pool") if isinstance(m, dict) else None, "videos": len(vids)}


def _collect_key() -> dict:
    """What the traced candidates depend on: every parameter but those of the scorer's decision."""
    d = dataclasses.asdict(COLLECT_PARAMS)
    for k in ("use_scorer", "seam_scorer", "scorer_path", "pip_min_clear", "rules_inset_p"):
        d.pop(k, None)
    return d


def candidates_of(directory: str | Path, *, workers: int = 2, progress=None, cache: bool = True):
    """(videos, traced results) of a set; traced once and kept in ``layout_candidates.json`` beside it
    (the features depend only on the detector's measurements, not on any scorer)."""
    d = Path(directory)
    videos = load_manifest(d)
    cache_file = d / "layout_candidates.json"
    key = {"features": [SEAM_FEATURES, INSET_FEATURES], "params": _collect_key()}
    if cache and cache_file.is_file():
        saved = json.loads(cache_file.read_text())
        if saved.get("key") == json.loads(json.dumps(key)) and len(saved["results"]) == len(videos):
            return videos, saved["results"]
    results = collect(videos, workers=workers, progress=progress)
    if cache:
        cache_file.write_text(json.dumps({"key": key, "results": results}))
    return videos, results


# ------------------------------------------------------------------------------------ held-out evaluation

def _predict_one(args: tuple[str, dict]) -> tuple[str | None, str | None]:
    from indexer.layout import analyze_layout

    path, params = args
    try:
        return analyze_layout(path, LayoutParams(**params)).layout, None
    except Exception as e:  # noqa: BLE001 - counted as an error prediction
        return None, str(e)


def predict(paths: list[str], params: LayoutParams, workers: int = 2) -> list[tuple[str | None, str | None]]:
    jobs = [(p, dataclasses.asdict(params)) for p in paths]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as ex:
            return list(ex.map(_predict_one, jobs, chunksize=4))
    return [_predict_one(j) for j in jobs]


def placement(video: dict) -> str:
    """Where a video's inset sits: ``corner`` (within 10 % of two borders), ``edge`` (of one) or ``middle``.

    Only an evaluation split: the detector has no such rule (the first one did, and missed every inset
    away from a corner)."""
    W, H = video["canvas"]
    x, y, w, h = min(video["regions"], key=lambda r: r[2] * r[3])
    near_x = x < 0.1 * W or x + w > 0.9 * W
    near_y = y < 0.1 * H or y + h > 0.9 * H
    return "corner" if near_x and near_y else "edge" if near_x or near_y else "middle"


def split_of(video: dict) -> str:
    """The held-out unit: the composition family, and for picture-in-picture also where the inset sits
    (a learned inset judge cannot be judged on insets with every inset held out; it can be judged on
    insets placed where its training data never put one)."""
    if video["label"] == "picture-in-picture":
        return f"{video['family']}/{placement(video)}"
    return video["family"]


def heldout_by_family(train_dirs: list[str | Path], eval_dir: str | Path, *, seed: int = 0, workers: int = 2,
                      params: LayoutParams = DEFAULT_PARAMS, work_dir: str | Path | None = None,
                      progress=None) -> dict:
    """Family-held-out figures: for each family of the evaluation set (:func:`split_of`), a scorer trained
    on the training sets *without that family* judges that family's videos (built from other clips: the
    evaluation set comes from the held-out pool). Returns per-family predictions and the pooled predictions.
    """
    import tempfile

    from indexer.layout.evaluate import layout_metrics

    tr_videos, tr_results = [], []
    for d in train_dirs:
        vs, rs = candidates_of(d, workers=workers, progress=progress)
        tr_videos += vs
        tr_results += rs
    ev = load_manifest(eval_dir)
    work = Path(work_dir or tempfile.mkdtemp(prefix="layout-heldout-"))
    per_family: dict[str, dict] = {}
    truth, pred = [], []
    for fam in sorted({split_of(v) for v in ev}):
        keep = [i for i, v in enumerate(tr_videos) if split_of(v) != fam]
        scorer = fit_scorer(table([tr_videos[i] for i in keep], [tr_results[i] for i in keep]), seed=seed,
                            meta={"excluded_families": [fam]})
        path = work / f"scorer-without-{fam.replace('/', '-')}.json"
        path.write_text(json.dumps(scorer))
        vids = [v for v in ev if split_of(v) == fam]
        got = predict([v["file"] for v in vids], dataclasses.replace(params, use_scorer=True,
                                                                     scorer_path=str(path)), workers)
        t = [v["label"] for v in vids]
        q = [g[0] or "error" for g in got]
        per_family[fam] = {"n": len(vids), "truth": t, "pred": q, "videos": [v["name"] for v in vids],
                           "errors": [g[1] for g in got if g[1]], "train_videos": len(keep)}
        truth += t
        pred += q
        if progress:
            progress(len(truth), len(ev))
    return {"per_family": per_family, "pooled": layout_metrics(truth, pred, seed=seed)}
