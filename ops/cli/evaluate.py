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
    if as_json:
        report["predictions"] = [{"path": p, "truth": t, "layout": r[1], "confidence": round(r[2], 4)}
                                 for (p, t), r in zip(pairs, results)]
        emit_json(report)
        return
    m, ci = report["metrics"], report["ci95"]

    def line(name: str, key: str) -> None:
        lo, hi = ci.get(key, [None, None])
        v = m.get(key)
        if v is None or v != v:
            out_console.print(f"  {name:<34} n/a")
            return
        rng = f"[{lo:.3f}, {hi:.3f}]" if lo is not None else ""
        out_console.print(f"  {name:<34} {v:.3f}  95% CI {rng}")

    out_console.print(f"[bold]layout[/] on {report['n']} videos ({report['n_single']} single-feed), "
                      f"{resamples} bootstrap resamples")
    line("accuracy (layout class)", "accuracy")
    line("accuracy (one vs several feeds)", "multi_feed_accuracy")
    line("false-positive rate (single-feed)", "false_positive_rate")
    line("recall (several feeds)", "multi_feed_recall")
    for c in report["classes"]:
        line(f"precision {c}", f"precision[{c}]")
        line(f"recall {c}", f"recall[{c}]")
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
              help="Clips to compose: the development pool or the held-out pool (split by file).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--scale", type=click.FloatRange(0.05, 10), default=1.0, show_default=True,
              help="Multiply every template's count.")
@click.option("--single-only", is_flag=True,
              help="Single-feed templates only: a set of negatives for the false-positive rate.")
def build_layout_set_cmd(out_dir: str, media_dir: str | None, pool: str, seed: int, scale: float,
                         single_only: bool) -> None:
    """Build the layout development set (recipe: ops/synthetic/devset.py) into OUT_DIR with labels.csv."""
    from ops.synthetic.devset import build_devset

    media = Path(media_dir) if media_dir else Path(__file__).resolve().parents[2].parent / "shared" / "media"
    if not media.is_dir():
        raise ConfigError(f"media folder not found: {media}")
    labels = build_devset(out_dir, media, pool, seed, scale, log=lambda m: out_console.print(m, soft_wrap=True),
                          single_only=single_only)
    out_console.print(f"wrote {labels}")


COMMANDS = [eval_group]
