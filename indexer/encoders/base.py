"""The encoder seam: images and texts into one L2-normalised embedding space.

Callers never know the model or the runtime behind it; they see ``model_id``
(recorded in every store so two models' vectors are never mixed), ``dim``, and
whether the weights are random (tests and offline mode), which every output
built from them must say.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image

ImageLike = np.ndarray | Image.Image


def to_pil(img: ImageLike) -> Image.Image:
    """Any RGB(A) or grey array, or a PIL image, as an RGB PIL image (what every preprocessor takes)."""
    from indexer.errors import EncoderError

    if isinstance(img, Image.Image):
        return img.convert("RGB")
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise EncoderError(f"expected an RGB image array (H, W, 3), got shape {arr.shape}")
    return Image.fromarray(arr[..., :3].astype(np.uint8, copy=False))


#: A text worth embedding has at least one character that is neither white space nor a control
#: character. One pattern for the check here and for the API's schema, so both say the same.
CONTENT_PATTERN = r"[^\s\x00-\x1f\x7f-\x9f]"
_CONTENT = re.compile(CONTENT_PATTERN)


def has_content(text: str | None) -> bool:
    return bool(text) and _CONTENT.search(text) is not None


def check_texts(texts: Sequence[str]) -> None:
    """Refuse empty texts before any model sees them: an empty prompt embeds to noise."""
    from indexer.errors import QueryError

    for t in texts:
        if not has_content(t):
            raise QueryError("empty text: nothing to embed (only white space or control characters)")


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class Encoder(abc.ABC):
    model_id: str
    dim: int
    random_weights: bool = False
    max_text_tokens: int | None = None

    @abc.abstractmethod
    def embed_images(self, images: Sequence[ImageLike]) -> np.ndarray:
        """float32 (n, dim), each row of unit length."""

    @abc.abstractmethod
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (n, dim), each row of unit length, in the image space."""

    def random_weights_note(self) -> str:
        """Why the weights are random, as the note every command prints before it answers."""
        why = f" because {self.fallback_reason}" if getattr(self, "fallback_reason", None) else ""
        return (f"encoder {self.model_id} uses RANDOM weights{why}. "
                "Scores and rankings show the machinery working, not real similarity.")

    def describe(self) -> str:
        note = " (RANDOM WEIGHTS: similarities are meaningless)" if self.random_weights else ""
        return f"{self.model_id} [{self.dim}-d]{note}"
