"""Two ways to load the confirm model, and the export that joins them.

1. **Components** (:func:`load_components`): a BLIP-2 checkpoint, a projector
   file (``weight``/``bias`` safetensors, 768 → hidden), a Qwen3 checkpoint,
   and optionally a LoRA adapter folder (peft). A folder written by
   ``sludge classifier train`` holds a ``visual_qwen.json`` naming all four,
   so :func:`load_model` on that folder takes this path.
2. **Single-model export** (:func:`load_export`): a stock
   ``Blip2ForConditionalGeneration`` with a decoder-only language model, LoRA
   merged, ``<image>`` in its tokenizer and ``image_token_index`` in its config
   (``alpharomercoma/vqwen-qformer-tiktok-v2`` in production). Its submodules
   are used in place (no copy), so the same inference code runs on it.

Names or local paths everywhere; the device is chosen automatically (CUDA
with bf16 where present, else CPU float32) unless given.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from classifier.errors import ClassifierError
from classifier.model import VisualQwen
from classifier.prompt import EVAL_QUESTION, IMAGE_MARKER
from indexer.encoders.blip2 import Blip2VisionStack, load_vision_stack, pick_device
from indexer.errors import SludgeError

log = logging.getLogger(__name__)

MODEL_CONFIG = "visual_qwen.json"
BASE_FINGERPRINT = "sludge_base.json"
DEFAULT_EXPORT = "alpharomercoma/vqwen-qformer-tiktok-v2"
_FP_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads",
            "num_key_value_heads", "vocab_size")


def _hint(e: Exception) -> str:
    return " ".join(str(e).split())[:200]


def base_fingerprint(config: Any) -> dict[str, Any]:
    """What an adapter must agree with: the language model's shape (ids differ between machines)."""
    return {k: getattr(config, k, None) for k in _FP_KEYS}


def load_tokenizer(src: str) -> Any:
    """The Qwen3 tokenizer with ``<image>`` as one special token (added when missing)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(src)
    except Exception as e:  # noqa: BLE001 - hub/transformers raise many types
        raise ClassifierError(f"tokenizer {src!r} could not be loaded ({_hint(e)}); pass a local folder") from None
    if IMAGE_MARKER not in tok.get_vocab():
        tok.add_tokens([IMAGE_MARKER], special_tokens=True)
    return tok


def load_projector(path: str, device: torch.device) -> nn.Linear:
    from safetensors.torch import load_file

    p = Path(path).expanduser()
    if not p.is_file():
        raise ClassifierError(f"projector file {p} does not exist")
    try:
        sd = load_file(str(p))
    except Exception as e:  # noqa: BLE001 - hub/transformers raise many types
        raise ClassifierError(f"{p}: not a readable safetensors projector ({_hint(e)})") from None
    if set(sd) != {"weight", "bias"} or sd["weight"].ndim != 2:
        raise ClassifierError(f"{p}: expected tensors 'weight' (out, in) and 'bias', found {sorted(sd)}")
    out_f, in_f = sd["weight"].shape
    proj = nn.Linear(in_f, out_f)
    proj.load_state_dict(sd)
    return proj.to(device).float()  # small: kept float32 for a stable splice


def _load_lm(src: str, dtype: torch.dtype, device: torch.device) -> nn.Module:
    from transformers import AutoModelForCausalLM

    try:
        lm = AutoModelForCausalLM.from_pretrained(src, dtype=dtype)
    except Exception as e:  # noqa: BLE001 - hub/transformers raise many types
        raise ClassifierError(f"language model {src!r} could not be loaded ({_hint(e)}); pass a local folder") from None
    return lm.to(device)


def _attach_adapter(lm: nn.Module, adapter: str, trainable: bool = False) -> nn.Module:
    from peft import PeftModel

    a = Path(adapter).expanduser()
    if not (a / "adapter_config.json").is_file():
        raise ClassifierError(f"{a} is not a LoRA adapter folder (no adapter_config.json)")
    fp_file = a / BASE_FINGERPRINT
    if fp_file.is_file():
        want = json.loads(fp_file.read_text())
        have = base_fingerprint(lm.config)
        diff = {k: (want.get(k), have.get(k)) for k in _FP_KEYS if want.get(k) != have.get(k)}
        if diff:
            shown = ", ".join(f"{k} {w} vs {h}" for k, (w, h) in diff.items())
            raise ClassifierError(f"adapter {a} was trained on another base model ({shown}); "
                                  "load it with the Qwen3 checkpoint it was trained on")
    try:
        return PeftModel.from_pretrained(lm, str(a), is_trainable=trainable)
    except (RuntimeError, ValueError, KeyError) as e:
        raise ClassifierError(f"adapter {a} does not fit this base model ({_hint(e)})") from None


def load_components(
    blip2: str,
    projector: str,
    qwen: str,
    adapter: str | None = None,
    *,
    tokenizer: str | None = None,
    device: str | None = "auto",
    trainable: bool = False,
    source: dict[str, Any] | None = None,
    random_weights: bool = False,
    **kwargs: Any,
) -> VisualQwen:
    """Assemble from parts; ``trainable`` leaves LoRA (and gradients) on for fine-tuning."""
    dev, dtype = pick_device(device)
    try:
        vision = load_vision_stack(blip2, device=str(dev))
    except SludgeError as e:
        raise ClassifierError(f"BLIP-2 {blip2!r}: {e}") from None
    proj = load_projector(projector, dev)
    lm = _load_lm(qwen, dtype, dev)
    if adapter:
        lm = _attach_adapter(lm, adapter, trainable)
    tok = load_tokenizer(tokenizer or qwen)
    if len(tok) > lm.get_input_embeddings().num_embeddings:
        raise ClassifierError(f"tokenizer has {len(tok)} tokens but {qwen} embeds only "
                              f"{lm.get_input_embeddings().num_embeddings}: they do not belong together")
    if not trainable:
        lm.eval()
    src = {"kind": "components", "blip2": blip2, "projector": projector, "qwen": qwen, "adapter": adapter,
           "id": adapter or qwen, **(source or {})}
    return VisualQwen(vision, proj, lm, tok, image_token_id=tok.convert_tokens_to_ids(IMAGE_MARKER),
                      device=dev, dtype=dtype, source=src, random_weights=random_weights, **kwargs)


def load_export(src: str = DEFAULT_EXPORT, *, device: str | None = "auto", **kwargs: Any) -> VisualQwen:
    """The published single-model export: stock ``Blip2ForConditionalGeneration``, decoder-only LM."""
    from transformers import AutoTokenizer, Blip2ForConditionalGeneration

    dev, dtype = pick_device(device)
    try:
        model = Blip2ForConditionalGeneration.from_pretrained(src, dtype=dtype)
    except Exception as e:  # noqa: BLE001 - hub/transformers raise many types
        raise ClassifierError(f"export {src!r} could not be loaded as Blip2ForConditionalGeneration "
                              f"({_hint(e)}); pass a local folder") from None
    cfg = model.config
    if not cfg.use_decoder_only_language_model:
        raise ClassifierError(f"{src}: its language model ({cfg.text_config.model_type}) is not decoder-only")
    if cfg.image_token_index is None:
        raise ClassifierError(f"{src}: config has no image_token_index; not a Visual-Qwen export")
    model.to(dev)
    model.eval()
    vision = Blip2VisionStack.__new__(Blip2VisionStack)
    nn.Module.__init__(vision)
    vision.config = cfg
    vision.vision_model = model.vision_model
    vision.query_tokens = model.query_tokens
    vision.qformer = model.qformer
    vision.with_itc = False
    if dev.type == "cpu":
        vision.float()  # CPU runs float32 throughout
    try:
        tok = AutoTokenizer.from_pretrained(src)
    except Exception as e:  # noqa: BLE001 - hub/transformers raise many types
        raise ClassifierError(f"export {src!r} has no loadable tokenizer ({_hint(e)})") from None
    proj = model.language_projection.float()
    return VisualQwen(vision, proj, model.language_model, tok, image_token_id=cfg.image_token_index, device=dev,
                      dtype=dtype, source={"kind": "export", "id": src}, **kwargs)


def load_model(src: str, *, device: str | None = "auto", **kwargs: Any) -> VisualQwen:
    """A trained folder (``visual_qwen.json`` → components) or an export (name or folder)."""
    p = Path(src).expanduser()
    if p.is_dir() and (p / MODEL_CONFIG).is_file():
        cfg = json.loads((p / MODEL_CONFIG).read_text())
        parts = cfg["components"]

        def resolve(v: str | None) -> str | None:
            if v is None:
                return None
            q = p / v
            return str(q) if q.exists() else v  # relative to the folder, else a name

        return load_components(resolve(parts["blip2"]), resolve(parts["projector"]), resolve(parts["qwen"]),
                               resolve(parts.get("adapter")), tokenizer=resolve(parts.get("tokenizer")),
                               device=device, random_weights=bool(cfg.get("random_weights")),
                               source={"id": str(p), "config": cfg.get("config")},
                               **{"question": cfg.get("question", EVAL_QUESTION), **kwargs})
    if p.exists() and not (p / "config.json").is_file():
        raise ClassifierError(f"{p} is neither a trained classifier folder ({MODEL_CONFIG}) nor an export "
                              "(config.json)")
    return load_export(src, device=device, **kwargs)


def export_single_model(model: VisualQwen, out: str | Path) -> Path:
    """Write a stock ``Blip2ForConditionalGeneration`` (LoRA merged) that loads with no custom code."""
    from peft import PeftModel
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    out = Path(out)
    lm = model.lm
    if isinstance(lm, PeftModel):
        import copy

        lm = copy.deepcopy(lm).merge_and_unload()
    vc = model.vision.config
    cfg = Blip2Config(vision_config=vc.vision_config.to_dict(), qformer_config=vc.qformer_config.to_dict(),
                      text_config=lm.config.to_dict(), num_query_tokens=model.num_queries,
                      image_token_index=model.image_token_id)
    blip = Blip2ForConditionalGeneration(cfg)
    blip.vision_model.load_state_dict(model.vision.vision_model.state_dict())
    blip.qformer.load_state_dict(model.vision.qformer.state_dict())
    with torch.no_grad():
        blip.query_tokens.copy_(model.vision.query_tokens)
    blip.language_projection.load_state_dict(model.projector.state_dict())
    blip.language_model.load_state_dict(lm.state_dict())
    blip.save_pretrained(out)
    model.tokenizer.save_pretrained(out)
    return out
