"""Labelled data for training and evaluation: three accepted formats, one row type.

1. **sludge manifest** (JSONL, one object per line, or a JSON list)::

       {"video": "clips/a.mp4", "label": true, "transcript": "optional text", "id": "optional"}
       {"frame": "frames/b.jpg", "label": false}

   ``video`` rows are sampled into frames (``--sampler``, default the seed's
   ``fps:1,max:30`` for training); ``frame`` (or ``image``) rows are one frame.
   ``label`` must be a JSON boolean (true = sludge). Relative paths are read
   from the manifest's folder (or ``media_root``).
2. **the seed's split files**: a JSON list of ``{id, classification, batch_name}``;
   the video is ``{media_root}/{batch_name}/{id}.<video ext>`` and its
   transcript, when present, ``{media_root}/transcripts/{id}.json`` (Whisper
   JSON with a ``text`` field) or ``.txt``.
3. **LLaVA-style conversation JSON** (how the seed stored training data):
   ``{"id", "image", "conversations": [{"from": "human", "value":
   "Audio transcript: …\\n<image>\\n…"}, {"from": "gpt", "value": "Yes."}]}``;
   the transcript is read back from the human turn, the label from the answer.

Every problem names the file and the row: a missing or unreadable file, an
empty manifest, a label that is not a boolean.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifier.errors import ManifestError
from classifier.prompt import IMAGE_MARKER, parse_answer

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".m4v", ".avi")


@dataclass(frozen=True)
class Row:
    id: str
    kind: str  # "video" | "frame"
    path: str
    label: bool
    transcript: str | None = None
    where: str = ""  # "manifest.jsonl:3", for error messages


def _read_objects(path: Path) -> list[tuple[int, Any]]:
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise ManifestError(f"manifest {path} is empty: nothing to train or evaluate on")
    s = text.lstrip()
    if s.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{path}: not valid JSON ({e})") from None
        return list(enumerate(data, 1))
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((n, json.loads(line)))
        except json.JSONDecodeError as e:
            raise ManifestError(f"{path}:{n}: not valid JSON ({e.msg})") from None
    return out


def _label(v: Any, where: str, field: str) -> bool:
    if not isinstance(v, bool):
        raise ManifestError(f"{where}: {field} must be a JSON boolean (true = sludge), got {v!r}")
    return v


def _file(base: Path, rel: str, where: str) -> Path:
    p = Path(rel).expanduser()
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        raise ManifestError(f"{where}: file {p} does not exist")
    if p.stat().st_size == 0:
        raise ManifestError(f"{where}: file {p} is empty")
    return p


def _transcript_for(root: Path, vid: str) -> str | None:
    j = root / "transcripts" / f"{vid}.json"
    if j.is_file():
        try:
            return str(json.loads(j.read_text(encoding="utf-8")).get("text") or "")
        except (json.JSONDecodeError, AttributeError):
            return None
    t = root / "transcripts" / f"{vid}.txt"
    return t.read_text(encoding="utf-8") if t.is_file() else None


def _from_llava(obj: dict, base: Path, where: str) -> Row:
    conv = obj.get("conversations") or []
    human = next((c.get("value", "") for c in conv if c.get("from") == "human"), "")
    answer = next((c.get("value", "") for c in conv if c.get("from") == "gpt"), "")
    label = parse_answer(answer)
    if label is None:
        raise ManifestError(f"{where}: the answer {answer!r} is not a yes/no label")
    transcript = None
    pre = "Audio transcript: "
    if human.startswith(pre) and IMAGE_MARKER in human:
        transcript = human[len(pre) : human.index(IMAGE_MARKER)].rstrip("\n")
    p = _file(base, obj["image"], where)
    return Row(str(obj.get("id") or p.stem), "frame", str(p), label, transcript, where)


def load_manifest(path: str | Path, media_root: str | Path | None = None) -> list[Row]:
    """Rows of a manifest in any accepted format; raises :class:`ManifestError` on the first problem."""
    path = Path(path)
    base = Path(media_root) if media_root else path.parent
    rows: list[Row] = []
    for n, obj in _read_objects(path):
        where = f"{path}:{n}"
        if not isinstance(obj, dict):
            raise ManifestError(f"{where}: expected an object, got {type(obj).__name__}")
        if "conversations" in obj and "image" in obj:
            rows.append(_from_llava(obj, base, where))
            continue
        if "classification" in obj and "batch_name" in obj:
            label = _label(obj["classification"], where, "classification")
            vid = str(obj.get("id", ""))
            folder = base / str(obj["batch_name"])
            found = next((folder / f"{vid}{e}" for e in VIDEO_EXTS if (folder / f"{vid}{e}").is_file()), None)
            if found is None:
                raise ManifestError(f"{where}: no video {vid}.* in {folder} (set --media-root to the dataset folder)")
            rows.append(Row(vid, "video", str(found), label, _transcript_for(base, vid), where))
            continue
        if "label" not in obj:
            raise ManifestError(f"{where}: no 'label' (expected {{video|frame, label, transcript?}})")
        label = _label(obj["label"], where, "label")
        kind = "video" if "video" in obj else "frame" if ("frame" in obj or "image" in obj) else None
        if kind is None:
            raise ManifestError(f"{where}: a row needs 'video' or 'frame' (a path)")
        rel = obj.get("video") or obj.get("frame") or obj.get("image")
        p = _file(base, str(rel), where)
        tr = obj.get("transcript")
        if tr is not None and not isinstance(tr, str):
            raise ManifestError(f"{where}: transcript must be a string, got {type(tr).__name__}")
        rows.append(Row(str(obj.get("id") or p.stem), kind, str(p), label, tr, where))
    if not rows:
        raise ManifestError(f"manifest {path} has no rows: nothing to train or evaluate on")
    return rows


def load_frames(rows: list[Row], sampler: Any, limits: Any = None) -> list[tuple[Row, list[Any], list[float]]]:
    """Decode each row's frames (videos through the sampler); errors name the manifest row."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from indexer.errors import MediaError
    from indexer.pipeline import Limits, sample_video

    out = []
    for r in rows:
        if r.kind == "frame":
            try:
                with Image.open(r.path) as im:
                    arr = np.asarray(im.convert("RGB"))
            except (UnidentifiedImageError, OSError) as e:
                raise ManifestError(f"{r.where}: {r.path} is not a readable image ({e})") from None
            out.append((r, [arr], [0.0]))
        else:
            try:
                s = sample_video(r.path, sampler, limits or Limits())
            except MediaError as e:
                raise ManifestError(f"{r.where}: {e}") from None
            if not s.frames:
                raise ManifestError(f"{r.where}: {r.path} gave no frames")
            out.append((r, [f.image for f in s.frames], [f.ts for f in s.frames]))
    return out
