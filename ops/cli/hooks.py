"""``sludge hooks``: webhook subscriptions, deliveries, and the jobs' dead letters."""

from __future__ import annotations

import click
from rich.table import Table

from ops.cli.context import get_app
from ops.cli.output import emit_json, out_console
from ops.usecases.times import format_time


def _hooks(ctx: click.Context):
    from ops.hooks.service import Hooks

    return Hooks(get_app(ctx).settings)


@click.group("hooks")
def hooks_group() -> None:
    """Webhook subscriptions (Standard Webhooks signatures) and their delivery log."""


@hooks_group.command("add")
@click.argument("url")
@click.option("--events", required=True,
              help="Comma-separated: video.flagged,video.cleared,video.review,sweep.candidate.")
@click.option("--description", default="")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def hooks_add(ctx: click.Context, url: str, events: str, description: str, as_json: bool) -> None:
    """Subscribe URL to events; prints the signing secret (whsec_…) once, on the last line."""
    from ops.hooks.webhooks import parse_events

    try:
        wanted = parse_events(events)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--events") from None
    sub = _hooks(ctx).webhooks.add(url, wanted, description)
    if as_json:
        emit_json(sub.public(with_secret=True))
        return
    out_console.print(f"subscription {sub.sub_id} → {sub.url} for {','.join(sub.events)}; signing secret:")
    click.echo(sub.secret)


@hooks_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def hooks_list(ctx: click.Context, as_json: bool) -> None:
    subs = _hooks(ctx).webhooks.list()
    if as_json:
        emit_json({"subscriptions": [s.public() for s in subs]})
        return
    t = Table(title="webhook subscriptions", title_justify="left")
    for c in ("id", "url", "events", "created", "description"):
        t.add_column(c, overflow="fold")
    for s in subs:
        t.add_row(s.sub_id, s.url, ",".join(s.events), format_time(s.created_at), s.description)
    out_console.print(t)


@hooks_group.command("remove")
@click.argument("sub_id")
@click.pass_context
def hooks_remove(ctx: click.Context, sub_id: str) -> None:
    sub = _hooks(ctx).webhooks.remove(sub_id)
    out_console.print(f"removed {sub.sub_id} ({sub.url}); its pending deliveries will not be sent")


@hooks_group.command("test")
@click.argument("sub_id")
@click.pass_context
def hooks_test(ctx: click.Context, sub_id: str) -> None:
    """Send a signed webhook.test message now and show how the receiver answered."""
    d = _hooks(ctx).webhooks.test(sub_id)
    if d["state"] == "delivered":
        out_console.print(f"delivered {d['id']}: HTTP {d['last_status']}")
    else:
        raise click.ClickException(f"test delivery {d['id']} failed: {d.get('last_error') or d['state']}")


@hooks_group.command("deliveries")
@click.option("--state", type=click.Choice(["pending", "retrying", "delivered", "dead"]), default=None)
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def hooks_deliveries(ctx: click.Context, state: str | None, limit: int, as_json: bool) -> None:
    """The delivery log, newest first (each with its attempts)."""
    wh = _hooks(ctx).webhooks
    items = wh.deliveries(state=state, limit=limit)
    if as_json:
        emit_json({"deliveries": [{**{k: v for k, v in d.items() if k != "body"}, "log": wh.attempts_log(d["id"])}
                                  for d in items]})
        return
    t = Table(title="webhook deliveries", title_justify="left")
    for c in ("id", "event", "subject", "state", "attempts", "last status", "last error", "created"):
        t.add_column(c, overflow="fold")
    for d in items:
        t.add_row(d["id"], d["event"], d["subject"], d["state"], str(d["attempts"]), d.get("last_status", ""),
                  (d.get("last_error") or "")[:80], format_time(float(d["created_at"])))
    out_console.print(t)


@hooks_group.command("redeliver")
@click.argument("delivery_id")
@click.pass_context
def hooks_redeliver(ctx: click.Context, delivery_id: str) -> None:
    """Queue a delivery again now (dead ones get a fresh set of attempts; the webhook-id stays)."""
    d = _hooks(ctx).webhooks.redeliver(delivery_id)
    out_console.print(f"{d['id']} queued again; a worker sends it")


@hooks_group.command("dead-jobs")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def hooks_dead_jobs(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Jobs that failed for good (bad input, or out of attempts), with their errors."""
    dead = _hooks(ctx).queue.dead_letters(limit)
    if as_json:
        emit_json({"dead": dead})
        return
    t = Table(title="dead-lettered jobs", title_justify="left")
    for c in ("job", "attempts", "error"):
        t.add_column(c, overflow="fold")
    for d in dead:
        t.add_row(d["job"], str(d.get("attempts", "")), d.get("error", ""))
    out_console.print(t)


COMMANDS = [hooks_group]
