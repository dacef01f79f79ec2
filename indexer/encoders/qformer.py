"""BLIP-2's Q-Former as an index encoder: its image-text contrastive (ITC) space.

As transformers' ``Blip2ForImageTextRetrieval`` (ITC mode) computes it: an
image gives 32 query outputs, each projected to 256 and normalised; a text
gives its [CLS] output, projected to 256 and normalised. BLIP-2's own
image-text score is the MAX over the 32 queries of the cosine with the text.

The index holds ONE vector per frame, so the 32 must become one. Choice:
``pooling="mean"`` (default): the mean of the 32 unit query embeddings,
renormalised. It needs no probe data, treats every query alike, and its
cosine with a text is a (rescaled) average of the 32 query cosines, which
is a smooth lower bound of the max. The alternative ``pooling="query:K"``
keeps the single query K, chosen with :func:`best_probe_query` as the query
that best matches a probe set of (image, text) pairs. What each costs against
max-over-queries is measured by :func:`pooling_recall` (recall@k of the
pooled ranking against the max-over-queries ranking) and reported by
``bench/classifier.py`` and the tests, on the tiny configuration (random
weights: the figure is about the geometry of pooling 32 vectors, not about
what pretrained BLIP-2 would lose).

``model_id`` names the checkpoint AND the pooling, so a store built with one
never receives vectors of another.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from indexer.encoders.base import Encoder, ImageLike, check_texts, l2_normalize
from indexer.encoders.blip2 import TINY, Blip2ImagePreprocessor, bert_vocab_file, load_vision_stack
from indexer.errors import ConfigError, EncoderError

DEFAULT_MODEL = "Salesforce/blip2-itm-vit-g"
MAX_TEXT_TOKENS = 32  # LAVIS's Q-Former max_txt_len


def parse_pooling(pooling: str, num_queries: int = 32) -> int | None:
    """None for "mean", else the query index of "query:K"."""
    if pooling == "mean":
        return None
    if pooling.startswith("query:"):
        try:
            k = int(pooling[6:])
        except ValueError:
            k = -1
        if 0 <= k < num_queries:
            return k
    raise ConfigError(f"Q-Former pooling {pooling!r}: expected 'mean' or 'query:K' with 0 <= K < {num_queries}")


def _model_tag(model: str, seed: int) -> str:
    if model == TINY:
        return f"tiny-random-seed{seed}"
    p = Path(model).expanduser()
    if p.is_dir():
        cfg = p / "config.json"
        import hashlib

        digest = hashlib.sha256(cfg.read_bytes()).hexdigest()[:12] if cfg.is_file() else "noconfig"
        return f"dir:{p.name}:{digest}"
    return model


class QFormerEncoder(Encoder):
    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        tokenizer: str | None = None,
        pooling: str = "mean",
        device: str | None = "auto",
        batch_size: int = 16,
        seed: int = 0,
        threads: int = 0,
    ) -> None:
        if threads:
            torch.set_num_threads(threads)
        self._stack = load_vision_stack(model, with_itc=True, device=device, seed=seed)
        self.device = next(self._stack.qformer.parameters()).device
        self.query_index = parse_pooling(pooling, self._stack.num_queries)
        self.pooling = pooling
        self.random_weights = model == TINY  # the tiny development model is the only random one, by name
        self.batch_size = batch_size
        self.dim = int(self._stack.config.image_text_hidden_size)
        self.max_text_tokens = MAX_TEXT_TOKENS
        self.model_id = f"blip2-itc/{_model_tag(model, seed)}/{pooling}"
        self._pre = Blip2ImagePreprocessor(int(self._stack.config.vision_config.image_size))
        self._tok = self._load_tokenizer(tokenizer or model)
        self._lock = threading.Lock()

    @staticmethod
    def _load_tokenizer(src: str):
        from transformers import AutoTokenizer, BertTokenizerFast

        if src == TINY:
            return BertTokenizerFast(vocab_file=str(bert_vocab_file()), do_lower_case=True)
        try:
            return AutoTokenizer.from_pretrained(src)
        except Exception as e:  # noqa: BLE001 - hub/transformers raise many types
            raise EncoderError(f"Q-Former tokenizer {src!r} could not be loaded ({' '.join(str(e).split())[:160]}); "
                               "pass a local folder with encoder.qformer_tokenizer") from None

    def random_weights_note(self) -> str:
        return (f"encoder {self.model_id} is the tiny development model with RANDOM weights. "
                "Scores show the machinery working, not real similarity.")

    def query_embeddings(self, images: Sequence[ImageLike]) -> np.ndarray:
        """(n, 32, dim): each query's ITC embedding, unit length (what max-over-queries scores)."""
        if len(images) == 0:
            return np.zeros((0, self._stack.num_queries, self.dim), dtype=np.float32)
        out = []
        for i in range(0, len(images), self.batch_size):
            px = self._pre(list(images[i : i + self.batch_size])).to(self.device)
            with self._lock, torch.inference_mode():
                out.append(self._stack.itc_image(self._stack.query_outputs(px)).float().cpu().numpy())
        return np.concatenate(out)

    def pool(self, q: np.ndarray) -> np.ndarray:
        if self.query_index is None:
            return l2_normalize(q.mean(axis=1))
        return l2_normalize(q[:, self.query_index, :])

    def embed_images(self, images: Sequence[ImageLike]) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.pool(self.query_embeddings(images))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        check_texts(texts)
        out = []
        for i in range(0, len(texts), self.batch_size):
            enc = self._tok(list(texts[i : i + self.batch_size]), padding=True, truncation=True,
                            max_length=MAX_TEXT_TOKENS, return_tensors="pt")
            with self._lock, torch.inference_mode():
                out.append(self._stack.itc_text(enc["input_ids"].to(self.device),
                                                enc["attention_mask"].to(self.device)).float().cpu().numpy())
        return l2_normalize(np.concatenate(out))

    def count_tokens(self, text: str) -> int:
        return len(self._tok(text, add_special_tokens=True)["input_ids"])


def max_over_queries(query_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """(n_texts, n_images): BLIP-2's own ITC score, the best of the 32 query cosines."""
    return np.einsum("iqd,td->tiq", query_emb, text_emb).max(axis=-1)


def best_probe_query(query_emb: np.ndarray, text_emb: np.ndarray) -> int:
    """The query index whose cosine with each probe image's own text is highest on average.

    ``query_emb`` (n, 32, d) and ``text_emb`` (n, d) are matched pairs.
    """
    sims = np.einsum("iqd,id->iq", query_emb, text_emb)
    return int(sims.mean(axis=0).argmax())


def pooling_recall(query_emb: np.ndarray, text_emb: np.ndarray, pooled: np.ndarray, k: int = 10) -> float:
    """Mean over texts of |top-k(pooled) ∩ top-k(max-over-queries)| / k: what pooling loses."""
    truth = max_over_queries(query_emb, text_emb)
    approx = text_emb @ pooled.T
    k = min(k, truth.shape[1])
    hits = []
    for t in range(truth.shape[0]):
        a = set(np.argsort(-truth[t])[:k].tolist())
        b = set(np.argsort(-approx[t])[:k].tolist())
        hits.append(len(a & b) / k)
    return float(np.mean(hits))
