"""``sludge keys``: API keys for the hooks service (stored hashed in Redis)."""

from __future__ import annotations

import click
from rich.table import Table

from ops.cli.context import get_app
from ops.cli.output import emit_json, out_console
from ops.usecases.times import format_time


def _hooks(ctx: click.Context):
    from ops.hooks.service import Hooks

    return Hooks(get_app(ctx).settings)


@click.group("keys")
def keys_group() -> None:
    """Create, list and revoke API keys (scopes: ingest, read, admin)."""


@keys_group.command("create")
@click.option("--scopes", required=True, help="Comma-separated: ingest,read,admin.")
@click.option("--name", default="", help="Who or what the key is for.")
@click.pass_context
def keys_create(ctx: click.Context, scopes: str, name: str) -> None:
    """Make a key; it is printed once, on the last line, and cannot be shown again."""
    from ops.hooks.keys import parse_scopes

    try:
        wanted = parse_scopes(scopes)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--scopes") from None
    hooks = _hooks(ctx)
    key, plaintext = hooks.api_keys.create(wanted, name)
    out_console.print(f"key {key.key_id} ({name or 'unnamed'}) scopes {','.join(key.scopes)}; store it now, "
                      "it is not kept:")
    click.echo(plaintext)


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def keys_list(ctx: click.Context, as_json: bool) -> None:
    keys = _hooks(ctx).api_keys.list()
    if as_json:
        emit_json({"keys": [k.to_dict() for k in keys]})
        return
    t = Table(title="API keys", title_justify="left")
    for c in ("id", "name", "scopes", "created", "last used", "revoked"):
        t.add_column(c)
    for k in keys:
        t.add_row(k.key_id, k.name, ",".join(k.scopes), format_time(k.created_at), format_time(k.last_used_at),
                  format_time(k.revoked_at) if k.revoked_at else "")
    out_console.print(t)


@keys_group.command("revoke")
@click.argument("key_id")
@click.pass_context
def keys_revoke(ctx: click.Context, key_id: str) -> None:
    """Revoke a key by its id (the part after sk_); requests with it fail from now on."""
    try:
        k = _hooks(ctx).api_keys.revoke(key_id)
    except KeyError as e:
        raise click.ClickException(str(e.args[0])) from None
    out_console.print(f"revoked {k.key_id} ({k.name or 'unnamed'})")


COMMANDS = [keys_group]
