"""Asking the confirm model (Visual-Qwen) about videos directly, outside the cascade (``sludge classify``).

Sampling, the optional transcript and the batched model call are here, so a front end only
translates paths in and results out; a file that cannot be read is reported by name and the
rest of the batch goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from indexer.errors import MediaError
from indexer.pipeline import sample_video

if TYPE_CHECKING:
    from ops.app import App


@dataclass
class Classified:
    """The model's answers per readable video (its results' ``to_dict()``), and the files it could not read."""

    results: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)


def classify_videos(app: App, paths: list[str], *, sampler: str | None = None,
                    use_transcript: bool = True) -> Classified:
    """Sample each video (and transcribe it when asked and it has audio), then one batched model call."""
    s = app.settings.classifier
    smp = app.sampler(sampler or s.sampler)
    clf = app.classifier
    batch, out = [], Classified()
    for v in paths:
        t0 = time.perf_counter()
        try:
            sampled = sample_video(v, smp, app.limits)
            tr = (app.transcriber.transcribe(v).text
                  if (use_transcript and app.transcriber and sampled.info.has_audio) else None)
        except MediaError as e:
            out.failed.append({"path": v, "error": str(e)})
            continue
        batch.append(((v, [f.image for f in sampled.frames], [f.ts for f in sampled.frames], tr),
                      time.perf_counter() - t0, sampled.warnings))
    results = clf.classify_batch([b[0] for b in batch]) if batch else []
    for (_, prep, warns), r in zip(batch, results):
        r.seconds += prep
        r.warnings.extend(warns)
        out.results.append({**r.to_dict(), "model": clf.describe(), "random_weights": clf.random_weights})
    return out
