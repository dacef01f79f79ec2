"""Opening a media file: one place that turns every way it can fail into a typed error.

Both decoders (video frames and audio) go through here, so an upload that is
missing, empty, a directory, a FIFO, unreadable, too large, not media, or
damaged gets the same error whichever reads it first.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import av

from indexer.errors import (
    CorruptMediaError,
    EmptyFileError,
    MediaError,
    MediaTooLargeError,
    NotAVideoError,
)

# Leading bytes of the containers uploads arrive in. Used only to word an error:
# a file that starts like a media container but cannot be opened is damaged,
# not "not media".
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftyp", "MP4/MOV"),
    (4, b"moov", "MP4/MOV"),
    (4, b"mdat", "MP4/MOV"),
    (4, b"free", "MP4/MOV"),
    (4, b"wide", "MP4/MOV"),
    (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (0, b"RIFF", "RIFF (WAV/AVI)"),
    (0, b"fLaC", "FLAC"),
    (0, b"OggS", "Ogg"),
    (0, b"ID3", "MP3"),
    (0, b"FORM", "AIFF"),
    (0, b"FLV", "FLV"),
    (0, b"\x30\x26\xb2\x75", "ASF/WMV"),
)


def _sniff(path: str) -> str | None:
    """The container a file's first bytes announce, if any (MPEG-TS and raw MP3 included)."""
    try:
        with open(path, "rb") as f:
            head = f.read(400)
    except OSError:
        return None
    for offset, magic, name in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return name
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        return "MPEG audio"
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "MPEG-TS"
    return None


def av_reason(e: Exception) -> str:
    """FFmpeg's own words for an error, on one line."""
    msg = getattr(e, "strerror", None) or str(e)
    return " ".join(str(msg).split())


def check_media_file(path: str | Path, max_file_bytes: int | None = None) -> int:
    """Refuse what is not a readable, non-empty regular file within the size limit; return its size.

    Called before anything opens the file: a FIFO or device would block a
    reader forever, and hashing a 40 GB upload only to refuse it wastes minutes.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise MediaError(path, "no such file") from None
    except OSError as e:
        raise MediaError(path, f"cannot read: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise MediaError(path, "is a directory, not a media file")
    if not stat.S_ISREG(st.st_mode):
        raise MediaError(path, "is not a regular file")
    if st.st_size == 0:
        raise EmptyFileError(path, "file is empty (0 bytes)")
    if max_file_bytes is not None and st.st_size > max_file_bytes:
        raise MediaTooLargeError(
            path, f"file is {st.st_size / 1e9:.2f} GB, above the limit of {max_file_bytes / 1e9:.2f} GB"
        )
    if not os.access(p, os.R_OK):
        raise MediaError(path, "permission denied")
    return st.st_size


def open_media(path: str | Path, max_file_bytes: int | None = None) -> tuple[av.container.InputContainer, int]:
    """The opened container and the file's size, or a typed error naming the file."""
    size = check_media_file(path, max_file_bytes)
    try:
        return av.open(str(path), metadata_errors="ignore"), size
    except av.error.InvalidDataError:
        kind = _sniff(str(path))
        if kind is not None:
            raise CorruptMediaError(
                path, f"looks like {kind} but cannot be opened (truncated or damaged)"
            ) from None
        raise NotAVideoError(path, "not a media file that can be decoded (invalid data)") from None
    except (av.FFmpegError, OSError) as e:
        raise CorruptMediaError(path, f"cannot open: {av_reason(e)}") from None
