"""``sludge history``: what the frame history holds."""

from __future__ import annotations

import click

from ops.cli.main import get_app
from ops.cli.output import emit_json, out_console


@click.group("history")
def history_group() -> None:
    """The frame history (every indexed frame, its transcript and metadata)."""


@history_group.command("stats")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def history_stats(ctx: click.Context, as_json: bool) -> None:
    """Videos, frames, size on disk and the model ids present."""
    stats = get_app(ctx).history(with_encoder=False).stats()
    if as_json:
        emit_json(stats)
        return
    for k, v in stats.items():
        out_console.print(f"{k}: {v}")


COMMANDS = [history_group]
