"""The classifier's typed error (kept here so ``indexer/errors.py`` stays the foundation's)."""

from __future__ import annotations

from indexer.errors import SludgeError


class ClassifierError(SludgeError):
    """The confirm model could not be built, loaded, trained or run; the message says what to fix."""


class ManifestError(ClassifierError):
    """A training or evaluation manifest is empty, malformed, or names unusable media."""
