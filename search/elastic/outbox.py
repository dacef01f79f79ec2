"""A local outbox: videos accepted while Elasticsearch could not take them.

One JSON file per video (its frame documents and its video document), written
atomically (temporary file, fsync, rename), so a crash leaves each entry absent
or complete. Entries are replayed in the order they were queued and deleted
only after the server acknowledged every document of the video.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from search.errors import StoreError


class Outbox:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def _path(self, video_id: str) -> Path:
        return self.dir / f"{video_id}.json"

    def put(self, video_id: str, entry: dict) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.dir / f".{video_id}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump({"queued_at": time.time(), **entry}, f, default=_plain)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self._path(video_id))
        except OSError as e:
            raise StoreError(f"cannot keep video {video_id} in the outbox {self.dir}: {e}") from None

    def has(self, video_id: str) -> bool:
        return self._path(video_id).is_file()

    def __len__(self) -> int:
        return sum(1 for _ in self.dir.glob("*.json")) if self.dir.is_dir() else 0

    def entries(self) -> Iterator[tuple[str, dict]]:
        if not self.dir.is_dir():
            return
        files = sorted(self.dir.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for p in files:
            try:
                yield p.stem, json.loads(p.read_text())
            except FileNotFoundError:  # taken by another process
                continue
            except (OSError, ValueError) as e:
                raise StoreError(f"outbox entry {p} cannot be read ({e}); move it aside and re-index the video") \
                    from None

    def remove(self, video_id: str) -> None:
        self._path(video_id).unlink(missing_ok=True)


def _plain(o):
    if hasattr(o, "tolist"):  # numpy arrays and scalars
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
