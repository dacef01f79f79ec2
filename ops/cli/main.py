"""The ``sludge`` command line.

Every failure the system anticipates is a :class:`SludgeError`; the group
below turns it into one readable line on stderr and a non-zero exit status.
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from indexer.errors import SludgeError
from ops.app import App, err_console
from ops.config import load_settings


class SludgeGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SludgeError as e:
            if ctx.find_root().params.get("debug"):
                raise
            err_console.print(f"[bold red]error:[/] {e}", soft_wrap=True)
            sys.exit(1)
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/]")
            sys.exit(130)


@click.group(cls=SludgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML configuration file (default: $SLUDGE_CONFIG, else ./sludge.toml if present).")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="sludge")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, debug: bool) -> None:
    """Index short videos, match them against an exemplar bank, and recall them by text.

    Embedded stores live in SLUDGE_DATA_DIR (default ./.data). Every score is
    the cosine similarity of normalised embeddings, in [-1, 1].
    """
    if config_path:
        os.environ["SLUDGE_CONFIG"] = config_path
    # User-facing messages go through rich; library log lines (open_clip logs its own
    # download failures) would only repeat them, so they show with --debug alone.
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.CRITICAL,
        format="%(levelname)s %(name)s: %(message)s",
    )
    ctx.ensure_object(dict)

    def make_app() -> App:
        if "app" not in ctx.obj:
            app = App(load_settings())
            ctx.obj["app"] = app

            def release() -> None:
                app.close()
                # ctx.obj holds this closure, which holds ctx: clear it so the models
                # are freed now, not at the next garbage collection (tests and servers
                # run many commands in one process).
                ctx.obj.clear()

            ctx.call_on_close(release)
        return ctx.obj["app"]

    ctx.obj["make_app"] = make_app


def _register() -> None:
    from ops.cli import (
        bank,
        check,
        classifier_cmd,
        classify,
        composite,
        config_cmd,
        encoder,
        evaluate,
        history,
        hooks,
        index,
        keys,
        labels,
        layout,
        migrate,
        policy,
        recall,
        retention,
        serve,
        services,
        sweep,
        transcribe,
    )

    modules = (bank, check, classifier_cmd, classify, composite, config_cmd, encoder, evaluate, history, hooks, index, keys,
               labels, layout, migrate, policy, recall, retention, serve, services, sweep, transcribe)
    for module in modules:
        for command in module.COMMANDS:
            cli.add_command(command)


_register()
