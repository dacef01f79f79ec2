"""``sludge check``: one video against the exemplar bank (embedding KNN and PDQ), a verdict per policy."""

from __future__ import annotations

import time

import click
from rich.table import Table

from indexer.pdq import pdq_hash
from indexer.pipeline import sample_video
from ops.cli.main import get_app
from ops.cli.output import emit_json, out_console
from search.verdict import decide


@click.command("check")
@click.argument("video", type=click.Path())
@click.option("--sampler", default=None, help="Frame sampler (default: index.sampler).")
@click.option("-k", "--k", "k", type=click.IntRange(1, 1000), default=None, help="Exemplars retrieved per frame.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with a `policies` list.")
@click.pass_context
def check_cmd(ctx: click.Context, video: str, sampler: str | None, k: int | None, as_json: bool) -> None:
    """Match a video's frames against the bank; per policy: best matches, score, threshold, verdict.

    A policy's verdict is `candidate` when its rule is met (default: the best
    frame's cosine similarity to any of its exemplars reaches the threshold),
    else `clear`.
    """
    app = get_app(ctx)
    t0 = time.perf_counter()
    sampled = sample_video(video, app.sampler(sampler), app.limits, layout=True)
    vectors = app.encoder.embed_images([f.image for f in sampled.frames])
    bank = app.bank()
    matches = bank.knn(vectors, k or app.settings.bank.k)
    # Second signal: PDQ near-duplicates of known images and frames (re-uploads).
    dups = bank.pdq_match([pdq_hash(f.image) for f in sampled.frames])
    verdicts = decide(bank.list_policies(),
                      [(f.ts, m + d) for f, m, d in zip(sampled.frames, matches, dups)])
    result = {
        "path": video,
        "verdict": "candidate" if any(v.verdict == "candidate" for v in verdicts) else "clear",
        "policies": [v.to_dict() for v in verdicts],
        "frames": [f.ts for f in sampled.frames],
        "layout": sampled.layout.to_dict() if sampled.layout is not None else None,
        "model_id": app.encoder.model_id,
        "random_weights": app.encoder.random_weights,
        "warnings": sampled.warnings,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if as_json:
        emit_json(result)
        return
    if not verdicts:
        out_console.print("the bank has no policies yet: add exemplars with `sludge bank add`")
    lay = sampled.layout
    shape = f", layout {lay.layout} ({lay.confidence:.2f}, {len(lay.regions)} regions)" if lay is not None else ""
    table = Table(title=f"check {video}  ({len(sampled.frames)} frames{shape})", title_justify="left")
    for col in ("policy", "verdict", "score", "threshold", "rule", "frames over", "best matches"):
        table.add_column(col, overflow="fold")
    for v in verdicts:
        style = "bold red" if v.verdict == "candidate" else "green"
        best = "\n".join(f"{m.score:.3f}{' pdq' if m.signal == 'pdq' else ''} {m.kind} {m.source[:50]} @{m.ts:.1f}s"
                         for m in v.matches[:3])
        table.add_row(v.policy, f"[{style}]{v.verdict}[/]", "" if v.score is None else f"{v.score:.3f}",
                      f"{v.threshold:g}", v.rule, f"{v.frames_over}/{v.frames}", best)
    out_console.print(table)
    for w in sampled.warnings:
        out_console.print(f"[yellow]warning:[/] {w}")


COMMANDS = [check_cmd]
