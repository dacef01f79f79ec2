"""``sludge labels``: reviewers' confirm/dismiss labels, exported for training the confirm model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.table import Table

from ops.cli.context import get_app
from ops.cli.output import emit_json, out_console
from ops.usecases.times import format_time


@click.group("labels")
def labels_group() -> None:
    """Labels reviewers gave in the console (kept in the bank, audited)."""


@labels_group.command("list")
@click.option("--policy", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def labels_list(ctx: click.Context, policy: str | None, as_json: bool) -> None:
    """Every label, oldest first."""
    labels = get_app(ctx).bank(with_encoder=False).labels(policy)
    if as_json:
        emit_json({"labels": [lab.to_dict() for lab in labels]})
        return
    t = Table(title="labels", title_justify="left")
    for c in ("when", "reviewer", "policy", "video", "verdict", "subject", "score", "note"):
        t.add_column(c, overflow="fold")
    for lab in labels:
        t.add_row(format_time(lab.at), lab.reviewer, lab.policy, lab.video_id[:12], lab.verdict, lab.subject,
                  "" if lab.score is None else f"{lab.score:.3f}", lab.note)
    out_console.print(t)


@labels_group.command("export")
@click.option("--policy", default=None, help="Only this policy's labels (default: all).")
@click.option("--out", "out", type=click.Path(dir_okay=False), default="-", show_default=True,
              help="Manifest file (JSONL); '-' writes to stdout.")
@click.option("--pairs", "as_pairs", is_flag=True,
              help="Image-text pairs for `sludge encoder finetune` instead: confirmed videos' frames with "
                   "their policy's texts and description.")
@click.option("--frames", type=click.IntRange(1, 50), default=4, show_default=True, help="With --pairs: frames per video.")
@click.pass_context
def labels_export(ctx: click.Context, policy: str | None, out: str, as_pairs: bool, frames: int) -> None:
    """A training manifest (`sludge classifier train --manifest FILE`): one row per labelled video.

    The latest label per policy and video counts: confirm → label true
    (sludge), dismiss → false. Videos whose file is no longer on this machine
    are left out and counted on stderr. With --pairs: image-text pairs of the
    confirmed videos instead (`sludge encoder finetune`).
    """
    from ops.app import err_console

    if as_pairs:
        _export_pairs(ctx, policy, out, frames)
        return
    bank = get_app(ctx).bank(with_encoder=False)
    rows, missing = [], 0
    for lab in bank.latest_labels(policy):
        if not lab.path or not Path(lab.path).is_file():
            missing += 1
            continue
        rows.append({"video": lab.path, "label": lab.verdict == "confirm", "id": lab.video_id,
                     "policy": lab.policy, "reviewer": lab.reviewer, "labelled_at": lab.at, "subject": lab.subject})
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if out == "-":
        sys.stdout.write(text)
    else:
        tmp = Path(out).with_name(Path(out).name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out)
    err_console.print(f"{len(rows)} labelled videos exported"
                      + (f"; {missing} left out (file no longer here)" if missing else ""))


def _export_pairs(ctx: click.Context, policy: str | None, out: str, frames: int) -> None:
    from indexer.encoders.pairs import assign_splits
    from ops.app import err_console
    from ops.usecases.encoder import pairs_from_labels

    pairs, errors = pairs_from_labels(get_app(ctx), policy, frames)
    pairs = assign_splits(pairs)
    for e in errors:
        err_console.print(f"[yellow]left out:[/] {e}")
    if out == "-":
        sys.stdout.write("".join(json.dumps(p.to_json()) + "\n" for p in pairs))
    else:
        from indexer.encoders.pairs import write_pairs

        write_pairs(pairs, out)
    err_console.print(f"{len(pairs)} pairs from {len({p.group for p in pairs})} confirmed videos exported"
                      + (f"; {len(errors)} left out" if errors else ""))


COMMANDS = [labels_group]
