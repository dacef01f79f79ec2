"""``sludge encoder``: make image-text pairs, fine-tune the encoder on them, measure retrieval recall."""

from __future__ import annotations

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ops.app import err_console
from ops.cli.context import get_app
from ops.cli.output import emit_json, out_console

SPLIT_CHOICE = click.Choice(["train", "val", "test"])


@click.group("encoder")
def encoder_group() -> None:
    """Adapt the embedding model: pairs → fine-tuning → recall before and after."""


def _model_options(f):
    f = click.option("--random-weights", is_flag=True, default=None,
                     help="Start from the architecture with seeded random weights (offline).")(f)
    f = click.option("--pretrained", default=None,
                     help="open_clip tag, checkpoint file or fine-tuned folder (default: encoder.pretrained).")(f)
    f = click.option("--model", default=None, help="open_clip architecture (default: encoder.model); "
                                                    "the repository adds sludge-tiny.")(f)
    return f


def _say_errors(errors, what: str = "skipped") -> None:
    for e in errors[:20]:
        err_console.print(f"[yellow]{what}:[/] {e}")
    if len(errors) > 20:
        err_console.print(f"[yellow]{what}:[/] … and {len(errors) - 20} more")


@encoder_group.command("pairs")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--from-set", "sets", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="A set made by `sludge eval build-layout-set`: its frames with captions from its recipe.")
@click.option("--from-bank", is_flag=True, help="The bank's image and frame exemplars with their policy's texts.")
@click.option("--frames", type=click.IntRange(1, 50), default=3, show_default=True, help="Frames per generated video.")
@click.option("--split", type=SPLIT_CHOICE, default=None,
              help="Put every pair in this split (default: by a hash of each pair's source, 8:1:1).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.pass_context
def pairs_cmd(ctx: click.Context, out: str, sets: tuple[str, ...], from_bank: bool, frames: int,
              split: str | None, seed: int) -> None:
    """Write image-text pairs as JSONL to OUT (labelled reviews: `sludge labels export --pairs`)."""
    from indexer.encoders.pairs import assign_splits, summarize, write_pairs
    from ops.usecases import encoder as uc

    if not sets and not from_bank:
        raise click.UsageError("name a source: --from-set DIR and/or --from-bank")
    pairs = uc.pairs_from_sets(sets, frames, seed, split)
    errors = []
    if from_bank:
        bank_pairs, errors = uc.pairs_from_bank(get_app(ctx), split)
        pairs += bank_pairs
    _say_errors(errors)
    if not pairs:
        err_console.print("[yellow]note:[/] no pairs: the sets hold no rendered videos and the bank no image or "
                          "frame exemplar with a policy text to pair it with")
    pairs = assign_splits(pairs, seed=seed)
    n = write_pairs(pairs, out)
    table = Table(title=f"{n} pairs in {out}")
    for col in ("split", "pairs", "texts", "pictures", "sources"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for name, row in summarize(pairs).items():
        table.add_row(name, *(str(row[k]) for k in ("pairs", "texts", "pictures", "sources")))
    out_console.print(table)


def _load(app, files, seed_tsv, seed_jsonl, encoder, splits):
    from ops.usecases import encoder as uc

    pairs, errors = uc.read_pair_files(files, seed_tsv, seed_jsonl)
    with err_console.status(f"reading the pictures of {len(pairs)} pairs …"):
        ready = uc.prepare(pairs, encoder, splits)
    _say_errors(errors + ready.errors)
    return ready, len(errors + ready.errors)


@encoder_group.command("finetune")
@click.argument("pairs", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(), help="Folder to write the checkpoint to.")
@click.option("--seed-tsv", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Pairs in the seed's format: TSV of image_id<TAB>base64 image …")
@click.option("--seed-jsonl", type=click.Path(dir_okay=False, exists=True), default=None,
              help="… and JSONL of text_id, text, image_ids.")
@_model_options
@click.option("--init-seed", type=int, default=None, help="Seed of random starting weights (default: encoder.seed).")
@click.option("--epochs", type=click.IntRange(1, 10000), default=30, show_default=True)
@click.option("--frozen-image-epochs", type=click.IntRange(0, 10000), default=2, show_default=True,
              help="First phase: the image tower frozen while the text tower trains (the seed's schedule).")
@click.option("--batch-size", type=click.IntRange(2, 65536), default=64, show_default=True)
@click.option("--lr", type=float, default=5e-4, show_default=True)
@click.option("--weight-decay", type=float, default=0.1, show_default=True)
@click.option("--warmup", type=click.IntRange(0, 10**7), default=50, show_default=True, help="Warm-up steps.")
@click.option("--max-minutes", type=float, default=None, help="Stop after this long; the best epoch is kept.")
@click.option("--patience", type=click.IntRange(1, 1000), default=4, show_default=True,
              help="Stop after this many epochs without a better validation recall.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-augment", is_flag=True, help="No brightness/contrast jitter.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def finetune_cmd(ctx: click.Context, pairs: tuple[str, ...], out: str, seed_tsv: str | None, seed_jsonl: str | None,
                 model: str | None, pretrained: str | None, random_weights: bool | None, init_seed: int | None,
                 epochs: int, frozen_image_epochs: int, batch_size: int, lr: float, weight_decay: float, warmup: int,
                 max_minutes: float | None, patience: int, seed: int, no_augment: bool, overwrite: bool,
                 as_json: bool) -> None:
    """Fine-tune the encoder contrastively on the train split of PAIRS, keeping the epoch best on val.

    Writes an open_clip checkpoint folder to --out; set encoder.pretrained to it to use it.
    """
    from indexer.encoders.finetune import FinetuneConfig
    from ops.usecases import encoder as uc

    if not pairs and not seed_tsv:
        raise click.UsageError("give a pairs file (JSONL) or --seed-tsv with --seed-jsonl")
    app = get_app(ctx)
    with err_console.status("loading the starting model …"):
        enc = uc.open_clip_encoder(app, model=model, pretrained=pretrained, random_weights=random_weights,
                                   seed=init_seed)
    if enc.random_weights:
        err_console.print(f"[bold yellow]note:[/] starting from {enc.describe()}")
    ready, _ = _load(app, pairs, seed_tsv, seed_jsonl, enc, ("train", "val"))
    cfg = FinetuneConfig(epochs=epochs, frozen_image_epochs=frozen_image_epochs, batch_size=batch_size, lr=lr,
                         weight_decay=weight_decay, warmup_steps=warmup, max_minutes=max_minutes, patience=patience,
                         seed=seed, augment=not no_augment)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("fine-tuning", total=None, note="")

        def progress(event: str, info: dict) -> None:
            if event == "start":
                bar.update(task, total=info["steps"])
                base = info["baseline"]
                err_console.print(f"start: val i2t@5 {base['i2t@5']:.3f}  t2i@5 {base['t2i@5']:.3f}  "
                                  f"({info['train']}, {info['val']})")
            elif event == "step":
                bar.update(task, completed=info["step"], note=f"epoch {info['epoch']} ({info['phase']}) "
                                                              f"loss {info['loss']:.3f}")
            elif event == "epoch":
                v = info["val"]
                err_console.print(f"epoch {info['epoch']:>3} {info['phase']:<5} loss {info['loss']:.3f}  val i2t@5 "
                                  f"{v['i2t@5']:.3f}  t2i@5 {v['t2i@5']:.3f}  {info['pairs_per_s']:.1f} pairs/s")

        result = uc.finetune(ready, out, cfg, encoder=enc, overwrite=overwrite, progress=progress)
    doc = {"out": str(result.out), "model_id": result.model_id, "base_model_id": result.base_model_id,
           "best_epoch": result.best_epoch, "stopped": result.stopped, "pairs_per_s": round(result.pairs_per_s, 2),
           "val": result.history[result.best_epoch - 1].val if result.best_epoch else None}
    if as_json:
        emit_json(doc)
        return
    out_console.print(f"wrote [bold]{result.out}[/] ({result.model_id}); best epoch {result.best_epoch}, stopped by "
                      f"{result.stopped}, {result.pairs_per_s:.1f} training pairs/s")
    out_console.print(f"use it: SLUDGE_ENCODER__PRETRAINED={result.out} (stores filled by another model refuse "
                      "its vectors until their contents are embedded again with it)")


def _cell(report, key: str) -> str:
    ci = report.ci.get(key)
    value = 100 * report.recall[key]
    return f"{value:.1f}" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


@encoder_group.command("eval")
@click.argument("pairs", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--seed-tsv", type=click.Path(dir_okay=False, exists=True), default=None)
@click.option("--seed-jsonl", type=click.Path(dir_okay=False, exists=True), default=None)
@click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default="test", show_default=True)
@_model_options
@click.option("--checkpoint", "checkpoints", multiple=True, type=click.Path(exists=True),
              help="A fine-tuned folder to measure beside the starting model (repeatable).")
@click.option("--resamples", type=click.IntRange(100, 100000), default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def eval_cmd(ctx: click.Context, pairs: tuple[str, ...], seed_tsv: str | None, seed_jsonl: str | None, split: str,
             model: str | None, pretrained: str | None, random_weights: bool | None, checkpoints: tuple[str, ...],
             resamples: int, seed: int, as_json: bool) -> None:
    """Image-to-text and text-to-image recall@1/5/10 with 95% bootstrap intervals, before and after.

    The first row is the configured encoder (or --model/--pretrained); each --checkpoint adds a row
    measured on the same pairs, with its change against the first.
    """
    from ops.usecases import encoder as uc

    if not pairs and not seed_tsv:
        raise click.UsageError("give a pairs file (JSONL) or --seed-tsv with --seed-jsonl")
    app = get_app(ctx)
    with err_console.status("loading the models …"):
        encoders = [uc.open_clip_encoder(app, model=model, pretrained=pretrained, random_weights=random_weights)]
        encoders += [uc.open_clip_encoder(app, pretrained=c, random_weights=False) for c in checkpoints]
    wanted = None if split == "all" else (split,)
    ready, skipped = _load(app, pairs, seed_tsv, seed_jsonl, encoders[0], wanted)
    reports = uc.evaluate(encoders, ready, None if split == "all" else split, resamples=resamples, seed=seed)
    if as_json:
        emit_json({"split": split, "pairs": len(ready.split(None if split == "all" else split)), "skipped": skipped,
                   "models": [r.to_dict() for r in reports]})
        return
    first = reports[0]
    table = Table(title=f"retrieval on the {split} split: {first.texts} texts, {first.pictures} pictures "
                        "(recall %, 95% interval)")
    table.add_column("model")
    keys = [f"{d}@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)]
    for key in keys:
        table.add_column(key.replace("i2t", "image→text ").replace("t2i", "text→image ").replace("@", "R@"),
                         justify="right")
    table.add_column("mean", justify="right")
    for r in reports:
        name = r.model_id + (" (random)" if r.random_weights else "")
        table.add_row(name, *(_cell(r, k) for k in keys), f"{100 * r.recall['mean']:.1f}")
        if r is not first:
            table.add_row("  change", *(f"{100 * (r.recall[k] - first.recall[k]):+.1f}" for k in keys),
                          f"{100 * (r.recall['mean'] - first.recall['mean']):+.1f}")
    out_console.print(table)


COMMANDS = [encoder_group]
