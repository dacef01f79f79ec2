"""Contrastive fine-tuning of an open_clip encoder on image-text pairs, as the seed did (shared/seeds/002).

The schedule is the seed's: the image tower frozen for the first epochs while the text tower learns to
meet it, then both towers together; open_clip's ``ClipLoss`` (symmetric InfoNCE with a learned
temperature), AdamW with open_clip's weight-decay exclusions (gains, biases, ``logit_scale``), a cosine
learning rate after a linear warm-up (``open_clip_train.scheduler.cosine_lr``), bf16 autocast on a GPU,
and early stopping on validation recall: the best epoch's weights are the ones written out.

open_clip's own trainer (``open_clip_train.main``) reads webdataset or CSV shards through its argument
parser and process groups; the loop here is small and takes the project's pairs directly, but every
piece it trains with is open_clip's.

A batch never holds one text (or one picture) twice: the loss counts every other item of the batch as
a negative, and two frames of one video under one caption would be taught apart.

The output is an open_clip checkpoint folder (``open_clip_config.json`` with the model and
preprocessing config, ``open_clip_model.safetensors``) that ``open_clip.create_model_and_transforms(
"local-dir:FOLDER")`` loads, and so ``encoder.pretrained = FOLDER``; what it was trained from, on and
how well it did is recorded under the config's ``sludge`` key.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from indexer.encoders.openclip import CHECKPOINT_CONFIG, OpenClipEncoder, is_checkpoint_dir, tag_id
from indexer.encoders.pairs import Pair, PairError, summarize
from indexer.encoders.retrieval import RetrievalReport, index_pairs, recall_report
from indexer.errors import EncoderError

#: What early stopping watches: the seed's two directions at K=5, averaged.
SELECT_METRIC = ("i2t@5", "t2i@5")


@dataclass
class FinetuneConfig:
    epochs: int = 30
    frozen_image_epochs: int = 2  # the seed's first phase: text tower only
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup_steps: int = 50
    max_minutes: float | None = None  # stop after this long (the best epoch so far is kept)
    patience: int = 4  # validations without improvement before stopping
    seed: int = 0
    augment: bool = True  # photometric jitter only: nothing that moves or crops a layout away

    def check(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or self.lr <= 0 or self.patience < 1:
            raise EncoderError("finetune needs epochs >= 1, batch size >= 2, a positive learning rate "
                               "and patience >= 1")


@dataclass
class EpochLog:
    epoch: int
    phase: str  # "text" (image tower frozen) or "joint"
    loss: float
    seconds: float
    pairs_per_s: float
    val: dict[str, float] = field(default_factory=dict)


@dataclass
class FinetuneResult:
    out: Path
    model_id: str  # of the saved model, as the encoder loading it will name it
    base_model_id: str
    best_epoch: int
    history: list[EpochLog]
    stopped: str  # "epochs", "early stopping", "time limit"
    pairs_per_s: float


Progress = Callable[[str, dict], None]


def _no_progress(event: str, info: dict) -> None:
    return None


def _score(report: dict[str, float]) -> float:
    return float(np.mean([report[k] for k in SELECT_METRIC]))


def _batches(texts: np.ndarray, pictures: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Every pair once, in batches without a repeated text or picture (repeats wait for a later batch)."""
    out, pending = [], list(rng.permutation(len(texts)))
    while pending:
        batch, seen_t, seen_p, rest = [], set(), set(), []
        for i in pending:
            if len(batch) < batch_size and texts[i] not in seen_t and pictures[i] not in seen_p:
                batch.append(i)
                seen_t.add(texts[i])
                seen_p.add(pictures[i])
            else:
                rest.append(i)
        out.append(batch)
        pending = rest
    return [b for b in out if len(b) >= 2]


class _Tensors:
    """Pairs as model inputs, made once: each picture preprocessed and each text tokenized once."""

    def __init__(self, encoder: OpenClipEncoder, pairs: Sequence[Pair], pictures: dict) -> None:
        keys, texts, links = index_pairs(pairs)
        self.keys, self.texts, self.links = keys, texts, links
        self.images = torch.stack([encoder.preprocess(pictures[k]) for k in keys])
        self.tokens = encoder.tokenizer(texts)
        pic = {k: i for i, k in enumerate(keys)}
        txt = {t: i for i, t in enumerate(texts)}
        self.pair_picture = np.array([pic[p.picture] for p in pairs])
        self.pair_text = np.array([txt[p.text] for p in pairs])


def _embed(model, tensors: _Tensors, device: torch.device, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    with torch.inference_mode():
        img = torch.cat([model.encode_image(tensors.images[i:i + batch].to(device), normalize=True).float().cpu()
                         for i in range(0, len(tensors.images), batch)])
        txt = torch.cat([model.encode_text(tensors.tokens[i:i + batch].to(device), normalize=True).float().cpu()
                         for i in range(0, len(tensors.tokens), batch)])
    return img.numpy(), txt.numpy()


def validate(model, tensors: _Tensors, device: torch.device) -> RetrievalReport:
    """Recall without intervals: early stopping compares the point figures epoch by epoch."""
    img, txt = _embed(model, tensors, device)
    return recall_report(img, txt, tensors.links, resamples=0)


def _param_groups(model, weight_decay: float) -> list[dict]:
    # open_clip_train.main's rule: no decay on gains, biases, norms, embeddings' scale.
    def exclude(n: str, p: torch.nn.Parameter) -> bool:
        return p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n

    named = list(model.named_parameters())
    return [{"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
            {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": weight_decay}]


def finetune(encoder: OpenClipEncoder, train: Sequence[Pair], val: Sequence[Pair], pictures: dict,
             out: str | Path, config: FinetuneConfig | None = None, *, overwrite: bool = False,
             progress: Progress = _no_progress) -> FinetuneResult:
    """Train ``encoder``'s model in place on ``train``, keep the epoch best on ``val``, write it to ``out``."""
    from open_clip import ClipLoss, get_model_preprocess_cfg
    from open_clip_train.scheduler import cosine_lr

    cfg = config or FinetuneConfig()
    cfg.check()
    out = Path(out)
    if out.exists() and not overwrite:
        raise EncoderError(f"{out} already exists; choose another folder or pass --overwrite")
    if len({p.text for p in train}) < 2 or len({p.picture for p in train}) < 2:
        raise PairError("train split", "fine-tuning needs at least two distinct texts and pictures to contrast")
    if not val:
        raise PairError("val split", "no validation pairs: early stopping and the best epoch need them")
    model_cfg = _model_config(encoder)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = encoder.device
    model = encoder.model
    tr, va = _Tensors(encoder, train, pictures), _Tensors(encoder, val, pictures)
    plan = [_batches(tr.pair_text, tr.pair_picture, cfg.batch_size, rng) for _ in range(cfg.epochs)]
    steps = sum(len(b) for b in plan)
    # fused: one kernel over every tensor; on a CPU it is 4-5x faster than the per-tensor loop, and the
    # token embedding (49k x width) makes the optimizer step a large part of a small model's step.
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6,
                                  fused=device.type in ("cpu", "cuda"))
    schedule = cosine_lr(optimizer, cfg.lr, min(cfg.warmup_steps, max(steps // 5, 1)), steps)
    loss_fn = ClipLoss()
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()

    base_report = validate(model, va, device)
    best, best_epoch, best_state = _score(base_report.recall), 0, copy.deepcopy(model.state_dict())
    history: list[EpochLog] = []
    progress("start", {"steps": steps, "train": summarize(train), "val": summarize(val),
                       "baseline": base_report.recall})
    started, step, stale, stopped, trained_pairs = time.monotonic(), 0, 0, "epochs", 0
    for epoch in range(1, cfg.epochs + 1):
        phase = "text" if epoch <= cfg.frozen_image_epochs else "joint"
        model.visual.requires_grad_(phase == "joint")
        model.train()
        t0, losses, seen = time.monotonic(), [], 0
        for batch in plan[epoch - 1]:
            schedule(step)
            idx = torch.as_tensor(batch)
            images = tr.images[tr.pair_picture[idx]].to(device)
            if cfg.augment:
                images = _jitter(images, cfg.seed + step)
            tokens = tr.tokens[tr.pair_text[idx]].to(device)
            with amp:
                img = model.encode_image(images, normalize=True)
                txt = model.encode_text(tokens, normalize=True)
                loss = loss_fn(img, txt, model.logit_scale.exp())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():  # open_clip_train's clamp: a temperature below 1/100 only overfits
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(loss.item())
            seen += len(batch)
            step += 1
            progress("step", {"epoch": epoch, "step": step, "steps": steps, "loss": losses[-1], "phase": phase})
            if cfg.max_minutes is not None and time.monotonic() - started > cfg.max_minutes * 60:
                stopped = "time limit"
                break
        trained_pairs += seen
        seconds = time.monotonic() - t0
        report = validate(model, va, device)
        log = EpochLog(epoch, phase, float(np.mean(losses)) if losses else float("nan"), seconds,
                       seen / seconds if seconds else 0.0, report.recall)
        history.append(log)
        score = _score(report.recall)
        if score > best:
            best, best_epoch, best_state, stale = score, epoch, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
        progress("epoch", {**asdict(log), "best_epoch": best_epoch})
        if stopped == "time limit":
            break
        if stale >= cfg.patience and epoch > cfg.frozen_image_epochs:
            stopped = "early stopping"
            break
    elapsed = time.monotonic() - started
    model.load_state_dict(best_state)
    model.eval()
    model.visual.requires_grad_(True)
    meta = {"architecture": encoder.model_name, "base_model_id": encoder.model_id,
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"), "config": asdict(cfg),
            "pairs": {"train": summarize(train), "val": summarize(val)}, "best_epoch": best_epoch,
            "stopped": stopped, "baseline_val": base_report.recall,
            "history": [asdict(h) for h in history], "pairs_per_s": trained_pairs / elapsed if elapsed else 0.0}
    _save(model, model_cfg, get_model_preprocess_cfg(model), meta, out)
    model_id = f"open_clip/{encoder.model_name}/{tag_id(str(out))}"
    return FinetuneResult(out=out, model_id=model_id, base_model_id=encoder.model_id, best_epoch=best_epoch,
                          history=history, stopped=stopped, pairs_per_s=meta["pairs_per_s"])


def _jitter(images: torch.Tensor, seed: int) -> torch.Tensor:
    """Brightness and contrast per image: re-uploads shift both, and neither moves a seam."""
    g = torch.Generator().manual_seed(seed)
    n = images.shape[0]
    scale = (1 + 0.2 * (torch.rand(n, 1, 1, 1, generator=g) - 0.5)).to(images.device, images.dtype)
    shift = (0.2 * (torch.rand(n, 1, 1, 1, generator=g) - 0.5)).to(images.device, images.dtype)
    return images * scale + shift


def _model_config(encoder: OpenClipEncoder) -> dict:
    """The architecture's open_clip config, for the saved folder to rebuild it without this repository."""
    from open_clip import get_model_config

    pretrained = getattr(encoder, "pretrained", None)
    if pretrained and is_checkpoint_dir(pretrained):
        return json.loads((Path(pretrained).expanduser() / CHECKPOINT_CONFIG).read_text())["model_cfg"]
    cfg = get_model_config(encoder.model_name)
    if cfg is None:
        raise EncoderError(f"open_clip has no config for {encoder.model_name!r}; cannot write a checkpoint")
    return cfg


def _save(model, model_cfg: dict, preprocess_cfg: dict, meta: dict, out: Path) -> None:
    """Write the folder next to its final place and rename it in: a killed run leaves no half checkpoint."""
    from safetensors.torch import save_model

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "open_clip_model.safetensors"))
    doc = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg, "sludge": meta}
    (tmp / CHECKPOINT_CONFIG).write_text(json.dumps(doc, indent=2))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
