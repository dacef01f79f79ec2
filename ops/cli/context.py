"""How a command reaches the application: through click's context, never by importing the root group.

Command modules import :func:`get_app` from here; ``ops.cli.main`` imports the command modules. With
``get_app`` in ``main`` the two imported each other, and a command module could not be imported alone.
"""

from __future__ import annotations

import click

from ops.app import App


def get_app(ctx: click.Context) -> App:
    """Settings are read when a command runs, not at import, so --help never fails on config."""
    return ctx.find_root().obj["make_app"]()
