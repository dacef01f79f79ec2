"""Turning texts, images and videos into exemplars for the bank.

One place for it, so the CLI, the API and imports all build the same ids,
hashes and checks.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from indexer.encoders.base import Encoder, has_content
from indexer.errors import EmptyFileError, MediaError, QueryError
from indexer.identity import file_sha256, text_sha256
from indexer.pdq import pdq_hash
from indexer.pipeline import Limits, sample_video
from indexer.sampling import Sampler
from search.bank import default_actor  # noqa: F401  (re-exported)
from search.types import Exemplar

MAX_TEXT_CHARS = 2000
MAX_NOTE_CHARS = 2000




def text_exemplar(encoder: Encoder, policy: str, text: str, *, note: str = "",
                  added_by: str | None = None) -> tuple[Exemplar, np.ndarray]:
    clean = " ".join((text or "").split())
    if not has_content(clean):
        raise QueryError("text exemplar is empty (only white space or control characters)")
    if len(clean) > MAX_TEXT_CHARS:
        raise QueryError(f"text exemplar has {len(clean)} characters; at most {MAX_TEXT_CHARS} are allowed")
    if len(note) > MAX_NOTE_CHARS:
        raise QueryError(f"the note has {len(note)} characters; at most {MAX_NOTE_CHARS} are allowed")
    count = getattr(encoder, "count_tokens", None)
    if count is not None and encoder.max_text_tokens and count(clean) > encoder.max_text_tokens:
        raise QueryError(
            f"text exemplar needs {count(clean)} tokens but {encoder.model_id} reads at most "
            f"{encoder.max_text_tokens}; the rest would be silently ignored. Shorten it or split it"
        )
    vec = encoder.embed_texts([clean])[0]
    ex = Exemplar("", policy, "text", clean, text_sha256(clean), encoder.model_id, note=note,
                  added_by=added_by or default_actor())
    return ex, vec


#: what ``bank add --image`` and ``bank calibrate`` take as images (a video otherwise)
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def read_image(path: str | Path) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise MediaError(path, "no such file")
    if p.stat().st_size == 0:
        raise EmptyFileError(path, "file is empty (0 bytes)")
    return _decode(p, path)


def decode_image(data: bytes, name: str) -> np.ndarray:
    """An uploaded image (bytes) as RGB; ``name`` is what errors call it."""
    import io

    if not data:
        raise EmptyFileError(name, "file is empty (0 bytes)")
    return _decode(io.BytesIO(data), name)


def _decode(source, name) -> np.ndarray:
    try:
        with Image.open(source) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise MediaError(name, f"not an image that can be read ({type(e).__name__})") from None


def keep_image(keep_dir: Path | None, content_hash: str, name: str, *, data: bytes | None = None,
               image: np.ndarray | None = None) -> Path | None:
    """A copy of an exemplar's picture under ``keep_dir/<content hash>/`` (one folder per content), so that
    the bank can embed it again with another model (``sludge migrate``) after the original file is gone."""
    if keep_dir is None:
        return None
    dest = Path(keep_dir) / content_hash / name
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    if data is not None:
        tmp.write_bytes(data)
    else:
        Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(tmp, "PNG")
    tmp.replace(dest)
    return dest


def kept_image(keep_dir: Path | None, content_hash: str) -> Path | None:
    """The kept copy of an exemplar's picture, if there is one."""
    if keep_dir is None or not re.fullmatch(r"[0-9a-f]{64}", content_hash or ""):
        return None
    d = Path(keep_dir) / content_hash
    files = sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")) if d.is_dir() else []
    return files[0] if files else None


def image_exemplar(encoder: Encoder, policy: str, path: str | Path, *, note: str = "",
                   added_by: str | None = None, keep_dir: Path | None = None) -> tuple[Exemplar, np.ndarray]:
    img = read_image(path)
    vec = encoder.embed_images([img])[0]
    h, q = pdq_hash(img)
    sha = file_sha256(path)
    keep_image(keep_dir, sha, Path(path).name, data=Path(path).read_bytes())
    ex = Exemplar("", policy, "image", str(Path(path).resolve()), sha, encoder.model_id,
                  note=note, added_by=added_by or default_actor(), pdq=h, pdq_quality=q)
    return ex, vec


def video_exemplars(encoder: Encoder, sampler: Sampler, policy: str, path: str | Path, *,
                    limits: Limits = Limits(), note: str = "", added_by: str | None = None,
                    keep_dir: Path | None = None) -> list[tuple[Exemplar, np.ndarray]]:
    """One exemplar per sampled frame; the content hash is the video's plus the frame time."""
    sampled = sample_video(path, sampler, limits)
    vid = file_sha256(path)
    vecs = encoder.embed_images([f.image for f in sampled.frames])
    out = []
    src = str(Path(path).resolve())
    for f, v in zip(sampled.frames, vecs):
        h, q = pdq_hash(f.image)
        chash = hashlib.sha256(f"{vid}@{f.ts:.3f}".encode()).hexdigest()
        keep_image(keep_dir, chash, "frame.png", image=f.image)
        out.append((Exemplar("", policy, "frame", f"{src}@{f.ts:.2f}s", chash, encoder.model_id,
                             note=note, added_by=added_by or default_actor(), pdq=h, pdq_quality=q), v))
    return out


_FRAME_SOURCE = re.compile(r"^(?P<path>.+)@(?P<ts>\d+(?:\.\d+)?)s$")


def frame_source(source: str) -> tuple[str, float]:
    """The video and time a frame exemplar's source ``PATH@Ts`` names."""
    m = _FRAME_SOURCE.match(source)
    if not m:
        raise MediaError(source, "frame exemplar source is not 'PATH@Ts'; cannot decode it again")
    return m.group("path"), float(m.group("ts"))


def reembed(encoder: Encoder, ex: Exemplar, keep_dir: Path | None = None) -> np.ndarray:
    """A new vector for an existing exemplar from its source (import from another model, rebuild, migrate).

    Texts are embedded again; images are read again from their path, else from the
    copy kept in ``keep_dir``; frames are decoded again from ``path@Ts``, else read from
    their kept copy. A source that is gone is a MediaError naming it, so a rebuild or
    import stops before anything is written.
    """
    if ex.kind == "text":
        return encoder.embed_texts([ex.source])[0]
    kept = kept_image(keep_dir, ex.content_hash)
    if ex.kind == "image":
        if not Path(ex.source).is_file() and kept is not None:
            return encoder.embed_images([read_image(kept)])[0]
        return encoder.embed_images([read_image(ex.source)])[0]
    path, ts = frame_source(ex.source)
    from indexer.video import VideoReader

    if not Path(path).is_file():
        if kept is not None:
            return encoder.embed_images([read_image(kept)])[0]
        raise MediaError(path, f"video of frame exemplar {ex.exemplar_id} is gone and no copy of the frame was "
                               "kept; cannot re-embed it")
    with VideoReader(path) as reader:
        frames = reader.frames_at([ts])
    if not frames:
        raise MediaError(path, f"no frame at {ts} s for exemplar {ex.exemplar_id}")
    return encoder.embed_images([frames[0].image])[0]
