"""``sludge services``: local Redis (with RediSearch) and Elasticsearch for development and tests."""

from __future__ import annotations

import click

from ops.cli.context import get_app
from ops.cli.output import emit_json, out_console
from ops.services import REGISTRY, get_service

NAMES = click.Choice(sorted(REGISTRY))


def _service(ctx: click.Context, name: str):
    return get_service(name)(get_app(ctx).settings.data_dir / "services")


@click.group("services")
def services_group() -> None:
    """Run local servers on 127.0.0.1 (production uses the images in docker-compose.yml)."""


@services_group.command("start")
@click.argument("name", type=NAMES)
@click.option("--port", type=click.IntRange(1, 65535), default=None)
@click.pass_context
def services_start(ctx: click.Context, name: str, port: int | None) -> None:
    """Start NAME (installing it first if needed); the last line printed is its URL."""
    st = _service(ctx, name).start(port)
    out_console.print(f"{name} running (pid {st.pid}, data {st.data_dir}, log {st.log_file})")
    click.echo(st.url)


@services_group.command("stop")
@click.argument("name", type=NAMES)
@click.pass_context
def services_stop(ctx: click.Context, name: str) -> None:
    """Stop NAME."""
    stopped = _service(ctx, name).stop()
    out_console.print(f"{name} stopped" if stopped else f"{name} was not running")


@services_group.command("status")
@click.argument("name", type=NAMES, required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def services_status(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Whether each service runs, where, and its URL."""
    for n in [name] if name else sorted(REGISTRY):
        st = _service(ctx, n).running()
        if as_json:
            emit_json({"name": n, "running": st is not None, **(st.__dict__ if st else {})})
        else:
            out_console.print(f"{n}: running at {st.url} (pid {st.pid})" if st else f"{n}: not running")


COMMANDS = [services_group]
