"""What the stores (the exemplar bank, the frame history) refuse, as typed errors.

Here, beside the stores, rather than in ``indexer/errors.py``: nothing in ``indexer`` raises them. They
derive from :class:`indexer.errors.SludgeError`, so every front end still turns them into one readable
line. ``QueryError`` stays in ``indexer.errors``: the encoders raise it for a text with nothing to embed.
"""

from __future__ import annotations

from indexer.errors import SludgeError


class StoreError(SludgeError):
    """A store (bank or history) refused an operation."""


class ModelMismatchError(StoreError):
    """Embeddings of two different models would be mixed in one store."""


class NotFoundError(StoreError):
    """A requested item does not exist."""
