"""One score scale for every backend: cosine similarity of unit vectors, in [-1, 1].

Each backend reports something else (faiss inner product is already cosine on
unit vectors; RediSearch COSINE returns a distance 1 - cos in [0, 2];
Elasticsearch's cosine similarity reports (1 + cos) / 2). Convert here, once,
so thresholds mean the same thing whichever store answered.
"""

from __future__ import annotations


def from_inner_product(ip: float) -> float:
    """faiss IndexFlatIP on L2-normalised vectors."""
    return max(-1.0, min(1.0, float(ip)))


def from_cosine_distance(distance: float) -> float:
    """RediSearch / RedisVL ``vector_distance`` with COSINE metric (1 - cos)."""
    return max(-1.0, min(1.0, 1.0 - float(distance)))


def from_es_cosine(score: float) -> float:
    """Elasticsearch ``similarity: cosine`` kNN ``_score`` = (1 + cos) / 2."""
    return max(-1.0, min(1.0, 2.0 * float(score) - 1.0))
