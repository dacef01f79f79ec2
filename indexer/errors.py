"""Typed errors shared by every package.

Every error carries a message a user can act on: what failed, on which item,
and why. The CLI prints ``str(error)`` on one line; nothing here should need a
traceback to be understood.
"""

from __future__ import annotations

from pathlib import Path


class SludgeError(Exception):
    """Base of every error the system raises on purpose."""


class MediaError(SludgeError):
    """A media file could not be used. Names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class EmptyFileError(MediaError):
    """The file has zero bytes."""


class NotAVideoError(MediaError):
    """The file opened but holds no decodable video stream."""


class CorruptMediaError(MediaError):
    """The container or its streams are damaged or truncated."""


class MediaTooLargeError(MediaError):
    """The file exceeds a configured size or duration limit."""


class NoAudioError(MediaError):
    """The file has no audio stream (callers usually treat this as silence)."""


class ConfigError(SludgeError):
    """A setting or a specification string is invalid."""


class SamplerSpecError(ConfigError):
    """A frame-sampler specification could not be parsed."""


class EncoderError(SludgeError):
    """An embedding model could not be loaded or run."""


class WeightsUnavailableError(EncoderError):
    """Pretrained weights could not be found or fetched."""


class TranscriptionError(SludgeError):
    """Audio could not be transcribed."""


class CompositeError(SludgeError):
    """A test video could not be generated."""


class QueryError(SludgeError):
    """A search query is empty, too long, or otherwise unusable."""
