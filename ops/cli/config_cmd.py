"""``sludge config show``: the effective configuration."""

from __future__ import annotations

import json

import click

from ops.cli.context import get_app
from ops.cli.output import out_console
from ops.config import effective_config


@click.group("config")
def config_group() -> None:
    """Configuration: SLUDGE_* environment variables over an optional TOML file."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def config_show(ctx: click.Context, as_json: bool) -> None:
    """Print the effective configuration, secrets masked."""
    data = effective_config(get_app(ctx).settings)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in _flatten(data):
        out_console.print(f"{key} = {json.dumps(value)}")


def _flatten(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


COMMANDS = [config_group]
