"""``sludge classifier train|eval``: fine-tune the confirm model's LoRA, and measure it."""

from __future__ import annotations

import click

from ops.cli.context import get_app
from ops.cli.output import emit_json, out_console


@click.group("classifier")
def classifier_group() -> None:
    """Train (LoRA) and evaluate the Visual-Qwen confirm model.

    Manifests: JSONL rows {"video"|"frame": PATH, "label": true|false,
    "transcript": TEXT?}, the seed's split files ([{id, classification,
    batch_name}], with --media-root) or LLaVA conversation JSON.
    """


@classifier_group.command("train")
@click.option("--manifest", required=True, type=click.Path(), help="Training manifest.")
@click.option("--val", "val", required=True, type=click.Path(), help="Validation manifest (early stopping).")
@click.option("--output", required=True, type=click.Path(), help="New folder for the adapter, projector, config.")
@click.option("--config", "config", type=click.Choice(["full", "tiny"]), default="full", show_default=True,
              help="'tiny' = DEVELOPMENT configuration: small BLIP-2/Qwen3 with random weights, real tokenizer.")
@click.option("--blip2", default=None, help="BLIP-2 checkpoint (full; default Salesforce/blip2-opt-2.7b).")
@click.option("--qwen", default=None, help="Qwen3 checkpoint (full; default Qwen/Qwen3-4B).")
@click.option("--projector", default=None, type=click.Path(), help="Stage-1 projector (safetensors weight/bias).")
@click.option("--train-projector/--freeze-projector", default=False, show_default=True,
              help="Train the projector with LoRA (the seed froze it).")
@click.option("--media-root", default=None, type=click.Path(), help="Folder the manifests' media paths are under.")
@click.option("--sampler", default="fps:1,max:30", show_default=True, help="Frames per training video.")
@click.option("--epochs", type=click.IntRange(1, 1000), default=3, show_default=True)
@click.option("--lr", type=float, default=2e-4, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 1024), default=8, show_default=True)
@click.option("--patience", type=click.IntRange(1, 1000), default=2, show_default=True,
              help="Epochs without a better validation loss before stopping.")
@click.option("--lora-r", type=click.IntRange(1, 1024), default=32, show_default=True)
@click.option("--lora-alpha", type=click.IntRange(1, 4096), default=64, show_default=True)
@click.option("--lora-dropout", type=click.FloatRange(0, 0.9), default=0.10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the training report as JSON.")
def train_cmd(manifest: str, val: str, output: str, config: str, blip2: str | None, qwen: str | None,
              projector: str | None, train_projector: bool, media_root: str | None, sampler: str, epochs: int,
              lr: float, batch_size: int, patience: int, lora_r: int, lora_alpha: int, lora_dropout: float,
              seed: int, device: str, as_json: bool) -> None:
    """LoRA fine-tuning on cached Q-Former features; the best validation epoch is kept."""
    from classifier.manifest import load_manifest
    from classifier.train import TrainOptions, train
    from indexer.sampling import parse_sampler

    parse_sampler(sampler)
    rows = load_manifest(manifest, media_root)
    val_rows = load_manifest(val, media_root)
    opts = TrainOptions(config=config, blip2=blip2, qwen=qwen, projector=projector, train_projector=train_projector,
                        lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, lr=lr, epochs=epochs,
                        batch_size=batch_size, patience=patience, seed=seed, sampler=sampler, device=device)
    if config == "tiny":
        out_console.print("[bold yellow]note:[/] --config tiny is the DEVELOPMENT configuration (random weights)")
    report = train(rows, val_rows, output, opts, progress=None if as_json else out_console.print)
    if as_json:
        emit_json(report.to_dict())
    else:
        out_console.print(f"saved {output} (best epoch {report.best_epoch}, {report.seconds:.1f}s)")


@classifier_group.command("eval")
@click.option("--model", "model", required=True, help="Trained folder or export (id or folder).")
@click.option("--manifest", required=True, type=click.Path(), help="Test manifest.")
@click.option("--media-root", default=None, type=click.Path())
@click.option("--sampler", default=None, help="Frames per video (default: classifier.sampler, uniform:4).")
@click.option("--resamples", type=click.IntRange(10, 100000), default=1000, show_default=True,
              help="Bootstrap resamples for the 95% intervals.")
@click.option("--json", "as_json", is_flag=True, help="JSON with video-level accuracy, precision, recall, f1 on top.")
@click.pass_context
def eval_cmd(ctx: click.Context, model: str, manifest: str, media_root: str | None, sampler: str | None,
             resamples: int, as_json: bool) -> None:
    """Frame- and video-level accuracy, precision, recall, F1, confusion matrix, unparseable count, 95% CIs."""
    from classifier.evaluate import evaluate
    from classifier.manifest import load_manifest

    app = get_app(ctx)
    app.settings.classifier.model = model
    rows = load_manifest(manifest, media_root)
    res = evaluate(app.classifier, rows, sampler or app.settings.classifier.sampler, resamples=resamples)
    if as_json:
        emit_json(res)
        return
    for level in ("video", "frame"):
        m = res[level]
        ci = m["ci95"]
        out_console.print(f"[bold]{level}[/] (n={m['n']})")
        for k in ("accuracy", "precision", "recall", "f1"):
            lo_hi = f"  95% CI {ci[k][0]:.4f}-{ci[k][1]:.4f}" if ci[k] else ""
            out_console.print(f"  {k:9} {m[k]:.4f}{lo_hi}")
        c = m["confusion"]
        out_console.print(f"  confusion TN={c['tn']} FP={c['fp']} FN={c['fn']} TP={c['tp']}")
    out_console.print(f"unparseable frames: {res['unparseable']}  ({res['model']})")


COMMANDS = [classifier_group]
