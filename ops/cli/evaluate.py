"""``sludge eval``: evaluate the system's stages on labelled sets (``sludge eval layout``)."""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import click

from indexer.errors import ConfigError
from ops.cli.output import emit_json, out_console


@click.group("eval")
def eval_group() -> None:
    """Measure a stage on a labelled set, with 95% bootstrap confidence intervals."""


def _layout_one(path: str) -> tuple[str, str | None, float, str | None]:
    from indexer.layout import analyze_layout

    try:
        r = analyze_layout(path)
        return path, r.layout, r.confidence, None
    except Exception as e:  # noqa: BLE001 - an unreadable video is counted, not fatal
        return path, None, 0.0, str(e)


@eval_group.command("layout")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--labels", "labels", type=click.Path(dir_okay=False), default=None,
              help="CSV with columns path,layout (paths relative to DIRECTORY); default DIRECTORY/labels.csv.")
@click.option("--resamples", type=click.IntRange(100, 100000), default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object: metrics, ci95, confusion, predictions.")
def eval_layout_cmd(directory: str, labels: str | None, resamples: int, seed: int, workers: int,
                    as_json: bool) -> None:
    """Accuracy, one-vs-several-feeds accuracy, false-positive rate on single-feed videos,
    per-class precision and recall and the confusion matrix of `sludge layout` on DIRECTORY.

    Intervals: 95% percentile bootstrap over videos (--resamples, default 1,000).
    A video that cannot be read counts as predicted "error".
    """
    from indexer.layout import LAYOUTS
    from indexer.layout.evaluate import layout_metrics, read_labels

    labels_path = Path(labels) if labels else Path(directory) / "labels.csv"
    if not labels_path.exists():
        raise ConfigError(f"labels file not found: {labels_path}")
    try:
        pairs = read_labels(labels_path, base=directory)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    bad = sorted({lab for _, lab in pairs if lab not in LAYOUTS})
    if bad:
        raise ConfigError(f"{labels_path}: unknown layouts {bad}; use {', '.join(LAYOUTS)}")
    paths = [p for p, _ in pairs]
    if workers > 1 and len(paths) > 1:
        with ProcessPoolExecutor(workers) as ex:
            results = list(ex.map(_layout_one, paths, chunksize=4))
    else:
        results = [_layout_one(p) for p in paths]
    truth = [lab for _, lab in pairs]
    pred = [r[1] or "error" for r in results]
    report = layout_metrics(truth, pred, n_boot=resamples, seed=seed)
    report["labels"] = str(labels_path)
    report["errors"] = [{"path": p, "error": e} for p, _, _, e in results if e]
    columns = _columns(labels_path)
    for col in ("family", "sources"):
        if columns.get(col):
            report[f"by_{col.rstrip('s')}"] = _breakdown(pairs, pred, columns[col], split=col == "sources")
    if as_json:
        report["predictions"] = [{"path": p, "truth": t, "layout": r[1], "confidence": round(r[2], 4)}
                                 for (p, t), r in zip(pairs, results)]
        emit_json(report)
        return
    _print_metrics(report, f"layout on {directory}")
    for key, title in (("by_family", "composition family"), ("by_source", "source clip (videos using it)")):
        if key in report:
            out_console.print(f"  by {title}: one vs several · class accuracy · predicted")
            for name, r in report[key].items():
                out_console.print(f"    {name:<32} n={r['n']:<4} {r['one_vs_several']:.3f} · "
                                  f"{r['class_accuracy']:.3f} · {r['predicted']}")
    classes = report["classes"]
    out_console.print("  confusion (rows: truth, columns: predicted)")
    out_console.print("  " + " " * 20 + "".join(f"{c[:10]:>11}" for c in classes))
    for t in classes:
        out_console.print("  " + f"{t[:20]:<20}" + "".join(f"{report['confusion'][t][c]:>11}" for c in classes))
    for e in report["errors"]:
        out_console.print(f"  [red]error[/] {e['path']}: {e['error']}", soft_wrap=True)
    sys.stdout.flush()


@eval_group.command("build-layout-set")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--media-dir", type=click.Path(file_okay=False), default=None,
              help="Shared media (default: ../shared/media next to the repository).")
@click.option("--pool", type=click.Choice(["dev", "heldout"]), default="dev", show_default=True,
              help="Real clips to compose: the development pool or the held-out pool (split by file).")
@click.option("--count", type=click.IntRange(1, 100000), default=300, show_default=True, help="Videos to make.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--families", default=None,
              help="Comma-separated families to draw from (default: all; see ops/synthetic/randomized.py).")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--max-duration", type=click.FloatRange(1.0, 600.0), default=None,
              help="Cut every video to at most this many seconds (same compositions, faster): for image-text "
                   "pair sets (`sludge encoder pairs --from-set`), not for layout evaluation.")
def build_layout_set_cmd(out_dir: str, media_dir: str | None, pool: str, count: int, seed: int,
                         families: str | None, workers: int, max_duration: float | None) -> None:
    """Build a randomized layout set (ops/synthetic/randomized.py) into OUT_DIR: the videos, labels.csv
    (path, layout, family, …) and manifest.json (each video's full specification and ground truth)."""
    from ops.synthetic.randomized import FAMILIES, build_set

    media = Path(media_dir) if media_dir else Path(__file__).resolve().parents[2].parent / "shared" / "media"
    fams = tuple(f.strip() for f in families.split(",")) if families else FAMILIES
    bad = [f for f in fams if f not in FAMILIES]
    if bad:
        raise ConfigError(f"unknown families {bad}; choose from {', '.join(FAMILIES)}")
    if not media.is_dir():
        out_console.print(f"note: {media} not found: only generated sources (no real clips or images)")
        media = None
    labels = build_set(out_dir, media, count, seed, pool, fams, workers=workers, max_duration=max_duration,
                       log=lambda m: out_console.print(m, soft_wrap=True))
    out_console.print(f"wrote {labels}")


@eval_group.command("train-layout")
@click.argument("sets", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Scorer file (default: indexer/layout/scorer.json, the one the detector loads).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--exclude-family", "exclude", multiple=True, help="Leave a family out (held-out checks).")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True)
def train_layout_cmd(sets: tuple[str, ...], out: str | None, seed: int, exclude: tuple[str, ...],
                     workers: int) -> None:
    """Train the layout scorer on randomized sets (built by `sludge eval build-layout-set`).

    Every candidate seam and inset of every video is measured (cached in SET/layout_candidates.json),
    labelled from the set's manifest, and two small tree ensembles are fitted (scikit-learn, seeded);
    thresholds come from out-of-fold probabilities. The same sets and seed give the same file.
    """
    from indexer.layout.scorer import DEFAULT_FILE
    from indexer.layout.train import train

    dest = Path(out) if out else DEFAULT_FILE
    scorer = train(list(sets), dest, seed=seed, workers=workers, exclude_families=exclude)
    m = scorer["meta"]
    out_console.print(f"wrote {dest}: {m['videos']} videos; seams {m['seam_rows']} rows ({m['seam_positives']} "
                      f"real), threshold {scorer['seam']['threshold']:.3f}; insets {m['inset_rows']} rows "
                      f"({m['inset_positives']} real), threshold {scorer['inset']['threshold']:.3f}")


@eval_group.command("layout-heldout")
@click.option("--train", "train_sets", multiple=True, required=True, type=click.Path(file_okay=False, exists=True),
              help="Randomized set(s) the scorer learns from (repeat).")
@click.option("--eval", "eval_set", required=True, type=click.Path(file_okay=False, exists=True),
              help="Randomized set judged: build it from the held-out clip pool (--pool heldout).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def layout_heldout_cmd(train_sets: tuple[str, ...], eval_set: str, seed: int, workers: int, as_json: bool) -> None:
    """Family-held-out figures: each family of the evaluation set judged by a scorer trained without it.

    Per family (one-vs-several accuracy, class accuracy, false positives or recall) and pooled over
    all families with 95% bootstrap intervals. With an evaluation set of held-out clips, whole source
    clips and whole families are both unseen.
    """
    from indexer.layout.train import heldout_by_family

    res = heldout_by_family(list(train_sets), eval_set, seed=seed, workers=workers)
    pairs, pred, family = [], [], {}
    for fam, r in res["per_family"].items():
        for name, t, q in zip(r["videos"], r["truth"], r["pred"]):
            pairs.append((name, t))
            pred.append(q)
            family[name] = fam
    rows = _breakdown(pairs, pred, family, split=False)
    for fam, r in rows.items():
        r["several_feeds"] = res["per_family"][fam]["truth"][0] != "single_scene"
        r["errors"] = res["per_family"][fam]["errors"]
    if as_json:
        emit_json({"families": rows, "pooled": res["pooled"]})
        return
    out_console.print(f"[bold]layout, family held out[/] (train: {', '.join(train_sets)}; eval: {eval_set})")
    for fam, r in rows.items():
        kind = "several" if r["several_feeds"] else "one"
        out_console.print(f"  {fam:<15} {kind:<7} n={r['n']:<4} one-vs-several {r['one_vs_several']:.3f}  "
                          f"class {r['class_accuracy']:.3f}  predicted {r['predicted']}")
    _print_metrics(res["pooled"], "pooled over the held-out families")


def _columns(labels_path: Path) -> dict[str, dict[str, str]]:
    """File name → value of each extra column of a labels file (randomized sets carry family and sources)."""
    import csv

    with open(labels_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {col: {Path(r["path"]).name: r[col] for r in rows if r.get(col)} for col in ("family", "sources")}


def _breakdown(pairs: list[tuple[str, str]], pred: list[str], column: dict[str, str], split: bool) -> dict:
    """Figures per value of a column (per family; per source, each video counted under every source it uses):
    the held-out splits a pooled figure hides."""
    by: dict[str, list[tuple[str, str]]] = {}
    for (path, truth), q in zip(pairs, pred):
        value = column.get(Path(path).name)
        for v in (value.split(";") if split and value else [value or "?"]):
            by.setdefault(v, []).append((truth, q))
    out = {}
    for name, tq in sorted(by.items()):
        out[name] = {"n": len(tq),
                     "one_vs_several": sum((t != "single_scene") == (q != "single_scene") for t, q in tq) / len(tq),
                     "class_accuracy": sum(t == q for t, q in tq) / len(tq),
                     "predicted": {k: [q for _, q in tq].count(k) for k in sorted({q for _, q in tq})}}
    return out


def _print_metrics(report: dict, title: str) -> None:
    m, ci = report["metrics"], report["ci95"]
    out_console.print(f"[bold]{title}[/]: {report['n']} videos ({report['n_single']} single-feed), "
                      f"{report['bootstrap']['resamples']} bootstrap resamples")
    for name, key in (("accuracy (layout class)", "accuracy"), ("accuracy (one vs several feeds)", "multi_feed_accuracy"),
                      ("false-positive rate (single-feed)", "false_positive_rate"),
                      ("recall (several feeds)", "multi_feed_recall"),
                      *((f"{w} {c}", f"{w}[{c}]") for c in report["classes"] for w in ("precision", "recall"))):
        lo, hi = ci.get(key, [None, None])
        v = m.get(key)
        if v is None or v != v:
            out_console.print(f"  {name:<34} n/a")
        else:
            out_console.print(f"  {name:<34} {v:.3f}  95% CI " + (f"[{lo:.3f}, {hi:.3f}]" if lo is not None else ""))


COMMANDS = [eval_group]
