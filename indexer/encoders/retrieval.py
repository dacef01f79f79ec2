"""Image-text retrieval recall@K, the measure the seed reports fine-tuning by (``shared/seeds/002``).

Real-time screening asks image-to-text (a frame against the bank's texts); historical recall asks
text-to-image (a new policy's text against every stored frame). Both are scored on one split of pairs:
the distinct texts against the distinct pictures, a query being a hit at K when any of its own
partners ranks in the top K. Several pictures sharing one text (the frames of a video, the seed's
``image_ids``) are all partners of that text, as in the seed's evaluation.

Intervals are percentile bootstrap over the queries (:func:`indexer.stats.bootstrap_ci`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from indexer.encoders.base import Encoder
from indexer.encoders.pairs import Pair
from indexer.stats import bootstrap_ci

KS = (1, 5, 10)


@dataclass
class RetrievalReport:
    model_id: str
    texts: int
    pictures: int
    recall: dict[str, float] = field(default_factory=dict)  # "i2t@1" … "t2i@10", "mean"
    ci: dict[str, list[float] | None] = field(default_factory=dict)
    random_weights: bool = False

    def to_dict(self) -> dict:
        return {"model_id": self.model_id, "random_weights": self.random_weights, "texts": self.texts,
                "pictures": self.pictures, "recall": self.recall, "ci95": self.ci}


def best_ranks(sim: np.ndarray, relevant: Sequence[Sequence[int]]) -> np.ndarray:
    """Per query row, the 0-based rank of its best-scored partner (items scoring higher, ties favour it)."""
    out = np.empty(len(relevant), dtype=np.int64)
    for q, rel in enumerate(relevant):
        best = sim[q, list(rel)].max()
        out[q] = int((sim[q] > best).sum())
    return out


def recall_report(image_emb: np.ndarray, text_emb: np.ndarray, image_texts: Sequence[Sequence[int]],
                  model_id: str = "", *, resamples: int = 1000, seed: int = 0) -> RetrievalReport:
    """Recall@K both ways from embeddings (rows unit length) and each picture's partner texts."""
    text_images: list[list[int]] = [[] for _ in range(len(text_emb))]
    for i, ts in enumerate(image_texts):
        for t in ts:
            text_images[t].append(i)
    sim = image_emb @ text_emb.T
    i2t = best_ranks(sim, image_texts)
    t2i = best_ranks(sim.T, text_images)

    def stats(ranks: np.ndarray, prefix: str):
        return lambda idx: {f"{prefix}@{k}": float((ranks[idx] < k).mean()) for k in KS}

    recall = {**stats(i2t, "i2t")(np.arange(len(i2t))), **stats(t2i, "t2i")(np.arange(len(t2i)))}
    recall["mean"] = float(np.mean(list(recall.values())))
    ci = {**bootstrap_ci(len(i2t), stats(i2t, "i2t"), resamples=resamples, seed=seed),
          **bootstrap_ci(len(t2i), stats(t2i, "t2i"), resamples=resamples, seed=seed + 1)}
    return RetrievalReport(model_id=model_id, texts=len(text_emb), pictures=len(image_emb), recall=recall, ci=ci)


def index_pairs(pairs: Sequence[Pair]) -> tuple[list[str], list[str], list[list[int]]]:
    """Distinct pictures, distinct texts, and each picture's partner texts (by index)."""
    pictures: dict[str, int] = {}
    texts: dict[str, int] = {}
    links: list[set[int]] = []
    for p in pairs:
        i = pictures.setdefault(p.picture, len(pictures))
        t = texts.setdefault(p.text, len(texts))
        if i == len(links):
            links.append(set())
        links[i].add(t)
    return list(pictures), list(texts), [sorted(s) for s in links]


def evaluate(encoder: Encoder, pairs: Sequence[Pair], pictures: dict, *, resamples: int = 1000,
             seed: int = 0) -> RetrievalReport:
    """Recall@K of ``encoder`` on ``pairs`` whose pictures are decoded in ``pictures``."""
    keys, texts, links = index_pairs(pairs)
    img = encoder.embed_images([pictures[k] for k in keys])
    txt = encoder.embed_texts(texts)
    report = recall_report(img, txt, links, encoder.model_id, resamples=resamples, seed=seed)
    report.random_weights = bool(getattr(encoder, "random_weights", False))
    return report
