"""PDQ perceptual hashes: the industry's weight-free near-duplicate signal.

A 256-bit hash per frame (64 hex characters) plus a quality score 0..100.
Hasher-Matcher-Actioner's defaults decide a match: Hamming distance ≤ 31 and
quality ≥ 50 on both sides; low-quality hashes (flat or near-black frames)
match everything and must be ignored.
"""

from __future__ import annotations

import numpy as np
import pdqhash

MATCH_DISTANCE = 31
MIN_QUALITY = 50


def pdq_hash(image: np.ndarray) -> tuple[str, int]:
    """Hash an RGB uint8 image; returns (hex, quality)."""
    bits, quality = pdqhash.compute(np.ascontiguousarray(image, dtype=np.uint8))
    packed = np.packbits(bits.astype(np.uint8))
    return packed.tobytes().hex(), int(quality)


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hex PDQ hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def is_match(a: str, qa: int, b: str, qb: int, *, distance: int = MATCH_DISTANCE,
             min_quality: int = MIN_QUALITY) -> bool:
    return qa >= min_quality and qb >= min_quality and hamming(a, b) <= distance
