"""open_clip encoders (CLIP, SigLIP, ...) on PyTorch.

Loads pretrained weights by open_clip tag or local checkpoint path. Where the
weights cannot be had (these machines reach no model hub), only an explicit
choice builds the architecture with seeded random weights: ``random_weights``
(tests, offline mode) or ``on_missing_weights="random"`` (the demo, which says
so plainly). Production never falls back silently.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from indexer.encoders.base import Encoder, ImageLike, check_texts, l2_normalize, to_pil
from indexer.identity import file_sha256
from indexer.errors import EncoderError, WeightsUnavailableError

log = logging.getLogger(__name__)

#: Architectures kept in this repository (open_clip JSON model configs), e.g. ``sludge-tiny``: small
#: enough to train from scratch on a CPU where no pretrained weights can be had.
CONFIG_DIR = Path(__file__).with_name("configs")
#: What a fine-tuned model folder holds (open_clip's own ``local-dir:`` layout).
CHECKPOINT_CONFIG = "open_clip_config.json"
_registered = False


def register_configs() -> None:
    """Make the repository's architectures known to open_clip (once per process)."""
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


def is_checkpoint_dir(pretrained: str | None) -> bool:
    return bool(pretrained) and (Path(pretrained).expanduser() / CHECKPOINT_CONFIG).is_file()


class OpenClipEncoder(Encoder):
    def __init__(
        self,
        model: str = "ViT-B-32",
        pretrained: str | None = "laion2b_s34b_b79k",
        *,
        random_weights: bool = False,
        on_missing_weights: str = "error",
        seed: int = 0,
        image_resize_mode: str = "longest",
        batch_size: int = 16,
        threads: int = 0,
        device: str = "cpu",
    ) -> None:
        import open_clip

        register_configs()
        if threads:
            torch.set_num_threads(threads)
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.fallback_reason: str | None = None
        kwargs = dict(image_resize_mode=image_resize_mode, device=self.device)
        try:
            if random_weights:
                self._model, self._preprocess = self._build_random(open_clip, model, seed, kwargs)
            else:
                self._model, self._preprocess = self._build_pretrained(open_clip, model, pretrained, kwargs)
        except WeightsUnavailableError as e:
            if on_missing_weights != "random":
                raise
            log.warning("%s; falling back to random weights", e)
            self.fallback_reason = str(e)
            random_weights = True
            self._model, self._preprocess = self._build_random(open_clip, model, seed, kwargs)
        except RuntimeError as e:
            raise EncoderError(f"open_clip could not build {model!r}: {e}") from None
        self.random_weights = random_weights
        self.pretrained = None if random_weights else pretrained
        self._model.eval()
        checkpoint = not random_weights and is_checkpoint_dir(pretrained)
        if checkpoint:
            model = checkpoint_architecture(pretrained) or model
        self.model_name = model
        self._tokenizer = open_clip.get_tokenizer(_local_dir(pretrained) if checkpoint else model)
        self.max_text_tokens = getattr(self._tokenizer, "context_length", None)
        tag = f"random-seed{seed}" if random_weights else tag_id(pretrained)
        self.model_id = f"open_clip/{model}/{tag}"
        with torch.inference_mode():
            self.dim = int(self._model.encode_text(self._tokenizer(["x"]).to(self.device)).shape[-1])
        self._lock = threading.Lock()  # one forward pass at a time: torch already uses every core

    @staticmethod
    def _build_random(open_clip, model: str, seed: int, kwargs: dict):
        # Seeded so every process builds the same "random" model and its
        # embeddings stay comparable across runs (tests, demo).
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            m, _, pre = open_clip.create_model_and_transforms(model, pretrained=None, **kwargs)
        finally:
            torch.random.set_rng_state(state)
        return m, pre

    @staticmethod
    def _build_pretrained(open_clip, model: str, pretrained: str | None, kwargs: dict):
        if not pretrained:
            raise WeightsUnavailableError(
                f"no pretrained weights named for {model}; set encoder.pretrained to an open_clip "
                "tag or a checkpoint path, or set encoder.random_weights for offline tests"
            )
        if is_checkpoint_dir(pretrained):
            try:
                m, _, pre = open_clip.create_model_and_transforms(_local_dir(pretrained), **kwargs)
            except (RuntimeError, OSError, ValueError, KeyError) as e:
                raise EncoderError(f"the checkpoint folder {pretrained} does not load: "
                                   f"{' '.join(str(e).split())[:300]}") from None
            return m, pre
        is_path = Path(pretrained).expanduser().exists()
        if not is_path and pretrained not in open_clip.list_pretrained_tags_by_model(model):
            raise WeightsUnavailableError(
                f"{pretrained!r} is neither a file nor a pretrained tag of open_clip model {model!r} "
                f"(known tags: {', '.join(open_clip.list_pretrained_tags_by_model(model)) or 'none'})"
            )
        try:
            m, _, pre = open_clip.create_model_and_transforms(
                model, pretrained=str(Path(pretrained).expanduser()) if is_path else pretrained, **kwargs
            )
        except (RuntimeError, OSError, ValueError) as e:
            text = " ".join(str(e).split())
            why = "it could not be downloaded" if "download" in text.lower() else text[:200]
            raise WeightsUnavailableError(
                f"pretrained weights {model}/{pretrained} could not be loaded ({why}); "
                "put the checkpoint file on disk and set encoder.pretrained to its path"
            ) from None
        return m, pre

    # The pieces fine-tuning trains and saves (indexer.encoders.finetune): the same model, preprocessing
    # and tokenizer that embed, so a trained model embeds exactly as it was measured.
    @property
    def model(self) -> torch.nn.Module:
        return self._model

    @property
    def preprocess(self):
        return self._preprocess

    @property
    def tokenizer(self):
        return self._tokenizer

    def embed_images(self, images: Sequence[ImageLike]) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for i in range(0, len(images), self.batch_size):
            batch = torch.stack([self._preprocess(to_pil(im)) for im in images[i : i + self.batch_size]])
            with self._lock, torch.inference_mode():
                feats = self._model.encode_image(batch.to(self.device))
            out.append(feats.float().cpu().numpy())
        return l2_normalize(np.concatenate(out))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        check_texts(texts)
        out = []
        for i in range(0, len(texts), self.batch_size):
            tokens = self._tokenizer(list(texts[i : i + self.batch_size])).to(self.device)
            with self._lock, torch.inference_mode():
                feats = self._model.encode_text(tokens)
            out.append(feats.float().cpu().numpy())
        return l2_normalize(np.concatenate(out))

    def count_tokens(self, text: str) -> int:
        """Tokens the text needs, to refuse exemplars that the context would silently cut."""
        enc = getattr(self._tokenizer, "encode", None)
        if enc is None:
            return 0
        return len(enc(text)) + 2  # start and end tokens


def _local_dir(pretrained: str) -> str:
    return f"local-dir:{Path(pretrained).expanduser().resolve()}"


def checkpoint_weights(folder: str | Path) -> Path | None:
    """The weights file of a checkpoint folder, in open_clip's order of preference."""
    for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        if (Path(folder).expanduser() / name).is_file():
            return Path(folder).expanduser() / name
    return None


def checkpoint_architecture(folder: str | Path) -> str | None:
    """The architecture a checkpoint folder says it is (written by ``sludge encoder finetune``)."""
    try:
        cfg = json.loads((Path(folder).expanduser() / CHECKPOINT_CONFIG).read_text())
    except (OSError, ValueError):
        return None
    return (cfg.get("sludge") or {}).get("architecture")


def tag_id(pretrained: str | None) -> str:
    """A stable id part: tags as they are, files and checkpoint folders by content (paths differ
    between machines, and a folder retrained in place must not keep its old id)."""
    if pretrained and is_checkpoint_dir(pretrained):
        weights = checkpoint_weights(pretrained)
        digest = file_sha256(weights)[:12] if weights else "noweights"
        return f"file:{Path(pretrained).expanduser().resolve().name}:{digest}"
    if pretrained and Path(pretrained).expanduser().is_file():
        p = Path(pretrained).expanduser()
        return f"file:{p.name}:{file_sha256(p)[:12]}"
    return str(pretrained)
