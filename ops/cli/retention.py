"""``sludge retention``: keep stored uploads and thumbnails within their age and size limits."""

from __future__ import annotations

import click
from rich.table import Table

from ops.cli.context import get_app
from ops.cli.output import emit_json, out_console


@click.group("retention")
def retention_group() -> None:
    """Delete stored uploads and thumbnails beyond the [retention] limits (workers do it every interval_s)."""


@retention_group.command("apply")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def retention_apply(ctx: click.Context, dry_run: bool, as_json: bool) -> None:
    """One pass now: too old first, then the oldest until the rest fits.

    Uploads whose job is still queued or processing are kept (their state is read
    from Redis when SLUDGE_REDIS_URL is set; without it, by age alone).
    """
    from ops.retention import run_retention

    settings = get_app(ctx).settings
    hooks = None
    if settings.redis_url is not None:
        from ops.hooks.service import Hooks

        hooks = Hooks(settings)
    try:
        job_state = (lambda job_id: hooks.client.hget(hooks.keys("job", job_id), "state")) if hooks else None
        report = run_retention(settings, job_state=job_state, dry_run=dry_run)
        if hooks is not None and not dry_run:
            from ops.hooks.metrics import record_retention

            record_retention(hooks.client, hooks.keys, report)
    finally:
        if hooks is not None:
            hooks.close()
    if as_json:
        emit_json(report.to_dict())
        return
    t = Table(title="retention" + (" (dry run: nothing deleted)" if dry_run else ""))
    for col in ("kind", "deleted", "deleted bytes", "kept", "kept bytes", "in use (kept)", "errors"):
        t.add_column(col, justify="left" if col == "kind" else "right")
    for k in report.kinds:
        t.add_row(k.kind, str(k.deleted_files), f"{k.deleted_bytes:,}", str(k.kept_files), f"{k.kept_bytes:,}",
                  str(k.skipped_in_use), "; ".join(k.errors[:3]))
    out_console.print(t)


COMMANDS = [retention_group]
