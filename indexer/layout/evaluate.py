"""Measuring the detector on a labelled set: accuracy, one-vs-several, false positives, bootstrap intervals."""

from __future__ import annotations

import csv
from pathlib import Path

from indexer.layout.params import LAYOUTS
from indexer.stats import bootstrap_ci


def read_labels(labels_csv: str | Path, base: str | Path | None = None) -> list[tuple[str, str]]:
    """(path, layout) pairs from a CSV with columns path,layout; relative paths resolve against base
    (default: the CSV's folder)."""
    labels_csv = Path(labels_csv)
    base = Path(base) if base is not None else labels_csv.parent
    out = []
    with open(labels_csv, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "path" not in reader.fieldnames or "layout" not in reader.fieldnames:
            raise ValueError(f"{labels_csv}: needs columns path,layout (got {reader.fieldnames})")
        for row in reader:
            p = Path(row["path"])
            out.append((str(p if p.is_absolute() else base / p), row["layout"].strip()))
    return out


def _metric_values(truth: list[str], pred: list[str], classes: list[str]) -> dict[str, float]:
    import numpy as np

    t = np.array(truth)
    q = np.array(pred)
    m: dict[str, float] = {}
    n = len(t)
    m["accuracy"] = float(np.mean(t == q)) if n else float("nan")
    tm = t != "single_scene"
    qm = q != "single_scene"
    m["multi_feed_accuracy"] = float(np.mean(tm == qm)) if n else float("nan")
    m["false_positive_rate"] = float(np.mean(qm[~tm])) if (~tm).any() else float("nan")
    m["multi_feed_recall"] = float(np.mean(qm[tm])) if tm.any() else float("nan")
    for c in classes:
        tp = float(np.sum((t == c) & (q == c)))
        m[f"precision[{c}]"] = tp / float(np.sum(q == c)) if np.sum(q == c) else float("nan")
        m[f"recall[{c}]"] = tp / float(np.sum(t == c)) if np.sum(t == c) else float("nan")
    return m


def layout_metrics(truth: list[str], pred: list[str], n_boot: int = 1000, seed: int = 0,
                   classes: list[str] | None = None) -> dict:
    """Accuracy, one-vs-several accuracy, false-positive rate on single-feed videos, per-class
    precision/recall, the confusion matrix, and 95 % percentile bootstrap intervals (resampling
    videos with replacement, ``n_boot`` times)."""
    import numpy as np

    classes = list(classes or LAYOUTS)
    extra = sorted({x for x in list(truth) + list(pred) if x not in classes})
    classes += extra
    point = _metric_values(truth, pred, classes)
    n = len(truth)
    t = np.array(truth)
    q = np.array(pred)
    boots = bootstrap_ci(n, lambda idx: _metric_values(list(t[idx]), list(q[idx]), classes), resamples=n_boot,
                         seed=seed)
    ci = {k: boots.get(k) or [None, None] for k in point}
    confusion = {tc: {pc: int(np.sum((t == tc) & (q == pc))) for pc in classes} for tc in classes}
    return {"n": n, "n_single": int(np.sum(t == "single_scene")), "metrics": point, "ci95": ci,
            "confusion": confusion, "classes": classes, "bootstrap": {"resamples": n_boot, "seed": seed}}
