"""Image-text pairs: what fine-tuning learns from and what retrieval is measured on.

One pair is a picture (an image file, a frame of a video at a time, or image bytes) and a text that
describes it, with an optional policy, split (train / val / test) and group. The **group** names the
source the picture came from (a video, a source clip): pairs of one group always land in one split,
so a model is never measured on frames of a video it was trained on.

Two input forms:

- the project's JSONL, one object per line: ``{"image": PATH}`` or ``{"video": PATH, "ts": SECONDS}``,
  ``"text"``, and optionally ``"policy"``, ``"split"``, ``"group"``. Relative paths are read from the
  pairs file's folder, so a pairs file travels with its media.
- the format of the production system in ``shared/seeds/002``: a TSV of ``image_id<TAB>base64 image``
  and a JSONL of ``{"text_id", "text", "image_ids"}`` (one text, several images).

A bad line is one :class:`PairError` naming the file and line; reading goes on with the rest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from indexer.encoders.base import has_content
from indexer.errors import MediaError, SludgeError

SPLITS = ("train", "val", "test")
#: The seed's split: 8 : 1 : 1.
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
#: Texts longer than this are refused outright (a tokenizer would cut them silently long before).
MAX_TEXT_CHARS = 2000


class PairError(SludgeError):
    """One pair that cannot be used: where it is and why."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


@dataclass(frozen=True)
class Pair:
    text: str
    image: str | None = None  # image file
    video: str | None = None  # video file, with ts
    ts: float | None = None
    data: bytes | None = None  # image bytes (the seed's TSV), with image_id
    image_id: str | None = None
    policy: str | None = None
    split: str | None = None
    group: str | None = None
    where: str = ""  # file:line, for errors

    @property
    def picture(self) -> str:
        """A key naming the picture, one per distinct image (several texts may share it)."""
        if self.image is not None:
            return f"image:{self.image}"
        if self.video is not None:
            return f"video:{self.video}@{self.ts:.3f}"
        return f"id:{self.image_id}"

    @property
    def source(self) -> str:
        """The group, else the file the picture comes from: the unit that never straddles two splits."""
        return self.group or self.video or self.image or f"id:{self.image_id}"

    def to_json(self, relative_to: Path | None = None) -> dict:
        d = {k: v for k, v in asdict(self).items() if v is not None and k not in ("where", "data")}
        for k in ("image", "video"):
            if k in d and relative_to is not None:
                try:
                    d[k] = str(Path(d[k]).resolve().relative_to(relative_to.resolve()))
                except ValueError:
                    pass
        return d


def check_text(text: object, where: str) -> str:
    if not isinstance(text, str) or not has_content(text):
        raise PairError(where, "the text is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise PairError(where, f"the text has {len(text)} characters; at most {MAX_TEXT_CHARS} are allowed")
    return " ".join(text.split())


def _pair_from(obj: dict, where: str, base: Path) -> Pair:
    text = check_text(obj.get("text"), where)
    split = obj.get("split")
    if split is not None and split not in SPLITS:
        raise PairError(where, f"split {split!r} is not one of {', '.join(SPLITS)}")
    common = dict(text=text, policy=obj.get("policy"), split=split, group=obj.get("group"), where=where)
    if obj.get("image") and obj.get("video"):
        raise PairError(where, "give either image or video, not both")
    if obj.get("image"):
        return Pair(image=str(_resolve(obj["image"], base)), **common)
    if obj.get("video"):
        ts = obj.get("ts")
        if not isinstance(ts, (int, float)) or isinstance(ts, bool) or ts < 0:
            raise PairError(where, "a video pair needs ts, the time of its frame in seconds (>= 0)")
        return Pair(video=str(_resolve(obj["video"], base)), ts=float(ts), **common)
    raise PairError(where, "no picture: give image (a file) or video and ts")


def _resolve(p: str, base: Path) -> Path:
    path = Path(p).expanduser()
    return path if path.is_absolute() else base / path


def _lines(path: Path) -> Iterator[tuple[str, str]]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield f"{path.name}:{n}", line


def _objects(path: Path) -> Iterator[tuple[str, dict | PairError]]:
    """Each non-empty line's JSON object, or the error saying why the line is not one."""
    for where, line in _lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield where, PairError(where, f"not JSON ({e.msg})")
            continue
        yield where, obj if isinstance(obj, dict) else PairError(where, "each line must be a JSON object")


def read_pairs(path: str | Path) -> tuple[list[Pair], list[PairError]]:
    """Pairs from the project's JSONL; bad lines come back as errors, not raised."""
    path = Path(path)
    if not path.is_file():
        raise PairError(str(path), "no such pairs file")
    pairs, errors = [], []
    for where, obj in _objects(path):
        try:
            if isinstance(obj, PairError):
                raise obj
            pairs.append(_pair_from(obj, where, path.parent))
        except PairError as e:
            errors.append(e)
    return pairs, errors


def read_seed_pairs(tsv: str | Path, jsonl: str | Path, split: str | None = None
                    ) -> tuple[list[Pair], list[PairError]]:
    """Pairs from the seed's TSV of base64 images and JSONL of texts with their image ids."""
    tsv, jsonl = Path(tsv), Path(jsonl)
    for p in (tsv, jsonl):
        if not p.is_file():
            raise PairError(str(p), "no such file")
    images: dict[str, bytes] = {}
    errors: list[PairError] = []
    for where, line in _lines(tsv):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 2:
            errors.append(PairError(where, "expected image_id<TAB>base64 image"))
            continue
        try:
            images[parts[0].strip()] = base64.b64decode(parts[1].strip(), validate=True)
        except (binascii.Error, ValueError):
            errors.append(PairError(where, f"image {parts[0]!r} is not valid base64"))
    pairs: list[Pair] = []
    for where, obj in _objects(jsonl):
        try:
            if isinstance(obj, PairError):
                raise obj
            text = check_text(obj.get("text"), where)
            ids = obj.get("image_ids")
            if not isinstance(ids, list) or not ids:
                raise PairError(where, "image_ids must be a non-empty list")
        except PairError as e:
            errors.append(e)
            continue
        for image_id in map(str, ids):
            if image_id not in images:
                errors.append(PairError(where, f"image {image_id} is not in {tsv.name}"))
                continue
            # The seed's images carry no source: each image is its own group.
            pairs.append(Pair(text=text, data=images[image_id], image_id=image_id, split=split,
                              group=f"id:{image_id}", where=where))
    return pairs, errors


def write_pairs(pairs: Iterable[Pair], path: str | Path) -> int:
    """Write pairs as JSONL, paths relative to the file's folder where they lie under it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for p in pairs:
            if p.data is not None:
                raise PairError(p.where or p.picture, "image bytes cannot be written to a JSONL pairs file")
            f.write(json.dumps(p.to_json(path.parent), ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


def assign_splits(pairs: Sequence[Pair], fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
                  seed: int = 0) -> list[Pair]:
    """Give every pair without a split one, by a hash of its source, so a source never straddles two.

    A hash rather than a shuffle: adding pairs later leaves every earlier source in its split.
    """
    lo, mid = fractions[0], fractions[0] + fractions[1]
    out = []
    for p in pairs:
        if p.split is None:
            h = hashlib.sha256(f"{seed}:{p.source}".encode()).digest()
            u = int.from_bytes(h[:8], "big") / 2**64
            split = "train" if u < lo else "val" if u < mid else "test"
            p = replace(p, split=split)
        out.append(p)
    return out


def select(pairs: Iterable[Pair], split: str | None) -> list[Pair]:
    return [p for p in pairs if split is None or p.split == split]


def load_pictures(pairs: Sequence[Pair], max_side: int = 640
                  ) -> tuple[dict[str, Image.Image], list[PairError]]:
    """Each distinct picture decoded once (a video opened once for all its frames); errors per pair."""
    from indexer.video import VideoReader

    pictures: dict[str, Image.Image] = {}
    errors: list[PairError] = []
    by_video: dict[str, list[Pair]] = defaultdict(list)
    for p in pairs:
        if p.picture in pictures:
            continue
        if p.video is not None:
            by_video[p.video].append(p)
            continue
        try:
            if p.data is not None:
                im = Image.open(io.BytesIO(p.data))
            else:
                if not Path(p.image).is_file():
                    raise PairError(p.where, f"image {p.image} does not exist")
                im = Image.open(p.image)
            im = im.convert("RGB")
            im.thumbnail((max_side, max_side))
            pictures[p.picture] = im
        except (UnidentifiedImageError, OSError) as e:
            errors.append(PairError(p.where, f"image {p.image or p.image_id} cannot be read: {e}"))
        except PairError as e:
            errors.append(e)
    for video, wanted in by_video.items():
        uniq = {p.picture: p for p in wanted}
        if not Path(video).is_file():
            errors.extend(PairError(p.where, f"video {video} does not exist") for p in uniq.values())
            continue
        try:
            with VideoReader(video, max_side=max_side) as reader:
                frames = reader.frames_at([p.ts for p in uniq.values()])
                by_ts = {f.ts: f.image for f in frames}
                times = np.array(sorted(by_ts))
                for p in uniq.values():
                    # frames_at keys each frame by the time asked for; times past the end get the last.
                    t = times[np.argmin(np.abs(times - p.ts))]
                    if p.ts > reader.info.duration + 0.5:
                        errors.append(PairError(p.where, f"ts {p.ts:.2f} s is past the end of {video} "
                                                         f"({reader.info.duration:.2f} s)"))
                        continue
                    pictures[p.picture] = Image.fromarray(by_ts[float(t)])
        except MediaError as e:
            errors.extend(PairError(p.where, str(e)) for p in uniq.values())
    return pictures, errors


def usable(pairs: Sequence[Pair], pictures: dict[str, object]) -> list[Pair]:
    return [p for p in pairs if p.picture in pictures]


def summarize(pairs: Sequence[Pair]) -> dict[str, dict[str, int]]:
    """Pairs, distinct texts, distinct pictures and sources per split: what a run says it trained on."""
    out: dict[str, dict[str, int]] = {}
    for split in sorted({p.split or "-" for p in pairs}):
        sel = [p for p in pairs if (p.split or "-") == split]
        out[split] = {"pairs": len(sel), "texts": len({p.text for p in sel}),
                      "pictures": len({p.picture for p in sel}), "sources": len({p.source for p in sel})}
    return out
