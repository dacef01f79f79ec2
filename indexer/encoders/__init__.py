"""Encoders behind one interface (:class:`indexer.encoders.base.Encoder`)."""

from indexer.encoders.base import Encoder, l2_normalize

__all__ = ["Encoder", "l2_normalize"]
