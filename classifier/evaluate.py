"""Frame- and video-level metrics of the confirm model, with 95% bootstrap intervals.

As the model card reports them: accuracy, precision, recall, F1, the
confusion matrix, and 95% percentile intervals from 1,000 bootstrap
resamples (of videos for video-level, of frames for frame-level; seeded, so a
rerun prints the same intervals). Positive = sludge.

Unparseable answers are explicit: at frame level an unparseable frame counts
as predicted "not sludge" (it did not say yes) and the count is reported; at
video level they follow the vote's policy (dropped by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from indexer.stats import bootstrap_ci

from classifier.manifest import Row, load_frames

BOOTSTRAP = 1000


def _counts(y: np.ndarray, p: np.ndarray) -> tuple[int, int, int, int]:
    tp = int(np.sum(y & p))
    tn = int(np.sum(~y & ~p))
    fp = int(np.sum(~y & p))
    fn = int(np.sum(y & ~p))
    return tn, fp, fn, tp


def _scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    tn, fp, fn, tp = _counts(y, p)
    n = tn + fp + fn + tp
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"accuracy": (tp + tn) / n if n else 0.0, "precision": prec, "recall": rec, "f1": f1}


def metrics(y_true: Sequence[bool], y_pred: Sequence[bool], *, resamples: int = BOOTSTRAP, seed: int = 0) -> dict[str, Any]:
    y = np.asarray(y_true, dtype=bool)
    p = np.asarray(y_pred, dtype=bool)
    out: dict[str, Any] = _scores(y, p)
    tn, fp, fn, tp = _counts(y, p)
    out["confusion"] = {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    out["n"] = int(y.size)
    ci = bootstrap_ci(int(y.size), lambda i: _scores(y[i], p[i]), resamples=resamples, seed=seed)
    out["ci95"] = {k: ci.get(k) for k in ("accuracy", "precision", "recall", "f1")}
    out["bootstrap_resamples"] = resamples
    return out


def evaluate(model: Any, rows: list[Row], sampler_spec: str = "uniform:4", *, resamples: int = BOOTSTRAP,
             seed: int = 0) -> dict[str, Any]:
    """Run the model over a manifest; the result's top level carries the VIDEO-level figures."""
    from indexer.sampling import parse_sampler

    decoded = load_frames(rows, parse_sampler(sampler_spec))
    results = model.classify_batch([(r.path, ims, ts, r.transcript) for r, ims, ts in decoded])
    f_true, f_pred, unparseable = [], [], 0
    v_true, v_pred = [], []
    per_video = []
    for (r, _, _), res in zip(decoded, results):
        for fa in res.frames:
            f_true.append(r.label)
            f_pred.append(fa.answer is True)
            unparseable += fa.answer is None
        v_true.append(r.label)
        v_pred.append(res.vote.sludge)
        per_video.append({"id": r.id, "label": r.label, **res.to_dict()})
    video = metrics(v_true, v_pred, resamples=resamples, seed=seed)
    frame = metrics(f_true, f_pred, resamples=resamples, seed=seed)
    return {**{k: video[k] for k in ("accuracy", "precision", "recall", "f1")},
            "video": video, "frame": {**frame, "unparseable": unparseable},
            "unparseable": unparseable, "unparseable_policy": {"frame": "counted as not sludge",
                                                              "video": model.unparseable},
            "model": model.describe(), "sampler": sampler_spec, "videos": per_video}
