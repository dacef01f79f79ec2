"""``sludge history``: what the frame history holds, and its outbox."""

from __future__ import annotations

import click
from rich.table import Table

from ops.cli.context import get_app
from ops.cli.output import emit_json, out_console


@click.group("history")
def history_group() -> None:
    """The frame history (every indexed frame, its transcript and metadata)."""


@history_group.command("stats")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def history_stats(ctx: click.Context, as_json: bool) -> None:
    """Documents, videos, frames, size on disk, segments and the model ids present."""
    stats = get_app(ctx).history(with_encoder=False).stats()
    if as_json:
        emit_json(stats)
        return
    indices = stats.pop("indices", None)
    for k, v in stats.items():
        if k == "bytes_on_disk":
            v = f"{v} ({v / 2**20:.1f} MiB)"
        out_console.print(f"{k}: {v}")
    if indices:
        table = Table(title="indices", title_justify="left")
        for col in ("index", "documents", "bytes", "segments"):
            table.add_column(col, justify="left" if col == "index" else "right")
        for name, i in indices.items():
            table.add_row(name, str(i["docs"]), str(i["bytes"]), str(i["segments"]))
        out_console.print(table)


@history_group.command("flush")
@click.pass_context
def history_flush(ctx: click.Context) -> None:
    """Write videos kept in the local outbox (while the server was unreachable) to the server."""
    history = get_app(ctx).history(with_encoder=False)
    before = history.pending()
    written = history.flush_pending()
    left = history.pending()
    out_console.print(f"outbox: {before} waiting, {written} written, {left} left")
    for note in getattr(history, "notices", []):
        out_console.print(f"[yellow]note:[/] {note}")
    if left:
        raise SystemExit(1)


@history_group.command("decide")
@click.argument("video_id")
@click.argument("decision")
@click.pass_context
def history_decide(ctx: click.Context, video_id: str, decision: str) -> None:
    """Record the latest moderation DECISION of a video ('none' clears it); recall filters on it."""
    history = get_app(ctx).history(with_encoder=False)
    history.set_decision(video_id, None if decision == "none" else decision)
    out_console.print(f"{video_id}: decision {decision}")


COMMANDS = [history_group]
