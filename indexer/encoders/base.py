"""The encoder seam: images and texts into one L2-normalised embedding space.

Callers never know the model or the runtime behind it; they see ``model_id``
(recorded in every store so two models' vectors are never mixed), ``dim``, and
whether the weights are random (tests and offline mode), which every output
built from them must say.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np
from PIL import Image

ImageLike = np.ndarray | Image.Image


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

    def describe(self) -> str:
        note = " (RANDOM WEIGHTS: similarities are meaningless)" if self.random_weights else ""
        return f"{self.model_id} [{self.dim}-d]{note}"
