"""``sludge check``: one video against the exemplar bank (embedding KNN and PDQ), a verdict per policy.

With ``--confirm`` the cascade decides the video too: stage one from the bank
verdicts, the layout and the transcript; stage two (Visual-Qwen) only where
they are unsure (:mod:`classifier.cascade`, via :func:`ops.usecases.screen.check_video`).
"""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from indexer.decision import Decision
from ops.cli.context import get_app
from ops.cli.output import emit_json, out_console
from ops.usecases.screen import check_video

DECISION_STYLE = {"flagged": "bold red", "cleared": "green", "review": "bold yellow"}


@click.command("check")
@click.argument("video", type=click.Path())
@click.option("--sampler", default=None, help="Frame sampler (default: index.sampler).")
@click.option("-k", "--k", "k", type=click.IntRange(1, 1000), default=None, help="Exemplars retrieved per frame.")
@click.option("--confirm", is_flag=True,
              help="Decide with the cascade: stage one (bank, PDQ, layout, transcript), then the confirm model "
                   "(Visual-Qwen) when the bank margin is in classifier.band_low..band_high or other signals call "
                   "for it.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with a `policies` list (and `cascade`).")
@click.pass_context
def check_cmd(ctx: click.Context, video: str, sampler: str | None, k: int | None, confirm: bool,
              as_json: bool) -> None:
    """Match a video's frames against the bank; per policy: best matches, score, threshold, verdict.

    A policy's verdict is `candidate` when its rule is met (default: the best
    frame's cosine similarity to any of its exemplars reaches the threshold),
    else `clear`. With --confirm, also the cascade's decision (flagged,
    cleared or review), the stage that decided, why, and what it cost.
    """
    c = check_video(get_app(ctx), video, sampler=sampler, k=k, confirm=confirm)
    sampled, verdicts, decision = c.analysed.sampled, c.verdicts, c.decision
    result: dict[str, Any] = {
        "path": video,
        "verdict": "candidate" if any(v.verdict == "candidate" for v in verdicts) else "clear",
        "policies": [v.to_dict() for v in verdicts],
        "frames": c.analysed.times,
        "layout": sampled.layout.to_dict() if sampled.layout is not None else None,
        "model_id": c.model_id,
        "random_weights": c.random_weights,
        "warnings": sampled.warnings,
        "seconds": c.seconds,
    }
    if decision is not None:
        result["cascade"] = cascade_dict(decision)
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
        best = "\n".join(f"{m.score:.3f}{'' if m.signal == 'embedding' else ' ' + m.signal} {m.kind} {m.source[:50]} @{m.ts:.1f}s"
                         for m in v.matches[:3])
        table.add_row(v.policy, f"[{style}]{v.verdict}[/]", "" if v.score is None else f"{v.score:.3f}",
                      f"{v.threshold:g}", v.rule, f"{v.frames_over}/{v.frames}", best)
    out_console.print(table)
    if decision is not None:
        print_decision(result["cascade"])
    for w in sampled.warnings:
        out_console.print(f"[yellow]warning:[/] {w}")


def cascade_dict(d: Decision) -> dict[str, Any]:
    """The cascade's decision as ``check --json`` reports it."""
    return {"decision": d.decision, "verdict": d.verdict, "stage": d.stage, "reason": d.reason, "cost": d.cost,
            "confirm": d.confirm, "evidence": d.evidence}


def vote_text(confirm: dict[str, Any] | None) -> str:
    """'1 yes / 0 no / 1 unparseable of 2 frames', or '' when stage two did not vote."""
    vote = (confirm or {}).get("vote")
    if not vote:
        return ""
    return f"{vote['yes']} yes / {vote['no']} no / {vote['unparseable']} unparseable of {vote['frames']} frames"


def print_decision(c: dict[str, Any]) -> None:
    style = DECISION_STYLE.get(c["decision"], "bold")
    out_console.print(f"decision: [{style}]{c['decision']}[/] (cascade verdict {c['verdict']}, stage {c['stage']}): "
                      f"{c['reason']}", soft_wrap=True)
    cost = c.get("cost") or {}
    secs = cost.get("seconds") or {}
    line = (f"cost: {cost.get('model_calls', 0)} model calls, stage 1 {secs.get('stage1', 0.0):.3f} s, "
            f"stage 2 {secs.get('stage2', 0.0):.3f} s")
    votes = vote_text(c.get("confirm"))
    out_console.print(line + (f"; vote {votes}" if votes else ""), soft_wrap=True)


COMMANDS = [check_cmd]
