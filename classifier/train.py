"""LoRA fine-tuning of Visual-Qwen on a sludge manifest (the seed's recipe, v2 defaults).

- LoRA on all attention and MLP projections of Qwen3 (r 32, alpha 64, dropout
  0.10), AdamW, lr 2e-4, cosine schedule with 3% warmup.
- The projector frozen by default (the seed: frozen beat trained by 0.77 pp);
  ``train_projector=True`` trains it too.
- Q-Former features computed ONCE per frame before the first epoch and
  reused (the vision stack is frozen, so they cannot change): training then
  costs the language model only, as the seed's did.
- Early stopping on validation loss (``patience`` epochs without a new best);
  the best epoch's adapter and projector are what is saved.

The output folder (``load_model`` reads it)::

    visual_qwen.json      every choice: sources, LoRA, optimiser, data, losses, best epoch
    adapter/              peft LoRA adapter (+ sludge_base.json: the base it fits)
    projector.safetensors the projector (trained or copied)
    base/                 tiny configuration only: the random base weights, so reloads are exact
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from classifier.errors import ClassifierError
from classifier.load import BASE_FINGERPRINT, MODEL_CONFIG, base_fingerprint, load_components
from classifier.manifest import Row, load_frames
from classifier.prompt import EVAL_QUESTION, TRANSCRIPT_LIMIT
from classifier.tiny import FULL_BLIP2, FULL_QWEN, TINY, build_tiny_base

log = logging.getLogger(__name__)

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class TrainOptions:
    config: str = "full"  # "full" (production parts) | "tiny" (development, random weights)
    blip2: str | None = None
    qwen: str | None = None
    projector: str | None = None  # stage-1 projector file; required for "full" unless train_projector
    train_projector: bool = False
    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.10
    lr: float = 2e-4
    warmup: float = 0.03
    epochs: int = 3
    batch_size: int = 8
    patience: int = 2
    seed: int = 0
    sampler: str = "fps:1,max:30"
    question: str = EVAL_QUESTION
    device: str = "auto"


@dataclass
class TrainReport:
    output: str
    best_epoch: int
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    first_step_loss: float = float("nan")
    frames: int = 0
    val_frames: int = 0
    seconds: float = 0.0
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _frames(rows: list[Row], sampler_spec: str) -> list[tuple[Any, str | None, bool]]:
    from indexer.sampling import parse_sampler

    sampler = parse_sampler(sampler_spec)
    return [(im, r.transcript, r.label) for r, ims, _ in load_frames(rows, sampler) for im in ims]


def _mean_loss(model, feats: torch.Tensor, items: list[tuple[Any, str | None, bool]], bs: int) -> float:
    total, n = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(items), bs):
            chunk = items[s : s + bs]
            loss = model.loss(feats[s : s + bs], [t for _, t, _ in chunk], [y for _, _, y in chunk])
            total += float(loss) * len(chunk)
            n += len(chunk)
    return total / max(n, 1)


def train(
    train_rows: list[Row],
    val_rows: list[Row],
    output: str | Path,
    opts: TrainOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrainReport:
    from peft import LoraConfig, get_peft_model
    from transformers import get_cosine_schedule_with_warmup

    opts = opts or TrainOptions()
    say = progress or (lambda m: log.info(m))
    t0 = time.perf_counter()
    out = Path(output)
    if out.exists() and any(out.iterdir()):
        raise ClassifierError(f"output folder {out} is not empty; choose a new one (a model is never overwritten)")
    out.mkdir(parents=True, exist_ok=True)
    random.seed(opts.seed)
    torch.manual_seed(opts.seed)

    items = _frames(train_rows, opts.sampler)
    val_items = _frames(val_rows, opts.sampler) if val_rows else []
    if opts.config == TINY:
        parts = build_tiny_base(out / "base", seed=opts.seed)
        rel = {"blip2": "base/blip2", "qwen": "base/qwen3", "tokenizer": "base/qwen3"}
        projector_src = parts["projector"]
    elif opts.config == "full":
        parts = {"blip2": opts.blip2 or FULL_BLIP2, "qwen": opts.qwen or FULL_QWEN}
        rel = {"blip2": parts["blip2"], "qwen": parts["qwen"], "tokenizer": parts["qwen"]}
        projector_src = opts.projector
        if projector_src is None:
            raise ClassifierError("the full configuration needs the stage-1 projector (--projector FILE); "
                                  "training one from scratch is not the seed's recipe")
    else:
        raise ClassifierError(f"unknown configuration {opts.config!r}: expected 'full' or 'tiny'")

    model = load_components(parts["blip2"], projector_src, parts["qwen"], device=opts.device,
                            random_weights=opts.config == TINY, question=opts.question, batch_size=opts.batch_size)
    lcfg = LoraConfig(r=opts.lora_r, lora_alpha=opts.lora_alpha, lora_dropout=opts.lora_dropout,
                      target_modules=LORA_TARGETS, task_type="CAUSAL_LM", bias="none")
    model.lm = get_peft_model(model.lm, lcfg)
    model.projector.requires_grad_(opts.train_projector)

    say(f"encoding {len(items)} training and {len(val_items)} validation frames (Q-Former, once)")
    feats = model.qformer_features([im for im, _, _ in items])
    val_feats = model.qformer_features([im for im, _, _ in val_items]) if val_items else None

    params = [p for p in model.lm.parameters() if p.requires_grad]
    if opts.train_projector:
        params += list(model.projector.parameters())
    optim = torch.optim.AdamW(params, lr=opts.lr, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(items) / opts.batch_size)
    total = steps_per_epoch * opts.epochs
    sched = get_cosine_schedule_with_warmup(optim, max(1, round(opts.warmup * total)) if opts.warmup else 0, total)

    report = TrainReport(str(out), best_epoch=-1, frames=len(items), val_frames=len(val_items))
    best, bad = float("inf"), 0
    order = list(range(len(items)))
    for epoch in range(opts.epochs):
        model.lm.train()
        random.shuffle(order)
        total_loss = 0.0
        for s in range(0, len(order), opts.batch_size):
            idx = order[s : s + opts.batch_size]
            loss = model.loss(feats[idx], [items[i][1] for i in idx], [items[i][2] for i in idx])
            if not torch.isfinite(loss):
                raise ClassifierError(f"training loss became {float(loss)} at epoch {epoch + 1}; lower the lr")
            if math.isnan(report.first_step_loss):
                report.first_step_loss = loss.item()
            optim.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optim.step()
            sched.step()
            total_loss += loss.item() * len(idx)
        model.lm.eval()
        train_loss = total_loss / len(items)
        report.train_losses.append(train_loss)
        val_loss = _mean_loss(model, val_feats, val_items, opts.batch_size) if val_items else train_loss
        report.val_losses.append(val_loss)
        say(f"epoch {epoch + 1}/{opts.epochs}: train loss {train_loss:.4f}, validation loss {val_loss:.4f}")
        if val_loss < best - 1e-6:
            best, bad, report.best_epoch = val_loss, 0, epoch + 1
            _save_weights(model, out, opts.train_projector, projector_src)
        else:
            bad += 1
            if bad >= opts.patience:
                report.stopped_early = True
                say(f"no improvement for {bad} epochs: stopping, best epoch {report.best_epoch}")
                break

    report.seconds = time.perf_counter() - t0
    cfg = {
        "format": 1,
        "config": opts.config,
        "random_weights": opts.config == TINY,
        "components": {"blip2": rel["blip2"], "qwen": rel["qwen"], "tokenizer": rel["tokenizer"],
                       "projector": "projector.safetensors", "adapter": "adapter"},
        "projector_source": projector_src,
        "question": opts.question,
        "transcript_limit": TRANSCRIPT_LIMIT,
        "options": asdict(opts),
        "lora": {"r": opts.lora_r, "alpha": opts.lora_alpha, "dropout": opts.lora_dropout, "targets": LORA_TARGETS},
        "base_fingerprint": base_fingerprint(model.lm.get_base_model().config),
        "data": {"train_rows": len(train_rows), "val_rows": len(val_rows), "train_frames": len(items),
                 "val_frames": len(val_items), "labels_sludge": sum(1 for _, _, y in items if y)},
        "feature_cache": "Q-Former features computed once per frame and reused every epoch",
        "report": report.to_dict(),
    }
    (out / MODEL_CONFIG).write_text(json.dumps(cfg, indent=2))
    return report


def _save_weights(model, out: Path, trained_projector: bool, projector_src: str) -> None:
    from safetensors.torch import save_file

    adir = out / "adapter"
    model.lm.save_pretrained(str(adir))
    (adir / BASE_FINGERPRINT).write_text(json.dumps(base_fingerprint(model.lm.get_base_model().config)))
    if trained_projector:
        sd = {k: v.detach().cpu().contiguous() for k, v in model.projector.state_dict().items()}
        save_file(sd, str(out / "projector.safetensors"))
    elif not (out / "projector.safetensors").exists():
        shutil.copyfile(projector_src, out / "projector.safetensors")
