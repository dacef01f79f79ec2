"""``sludge bank``: the exemplar bank (add, list, remove)."""

from __future__ import annotations

import click
from rich.table import Table

from indexer.errors import ConfigError
from ops.app import err_console
from ops.cli.main import get_app
from ops.cli.output import emit_json, format_time, out_console
from search.exemplars import image_exemplar, text_exemplar, video_exemplars
from search.types import check_policy_name


@click.group("bank")
def bank_group() -> None:
    """The exemplar bank: known-bad texts, images and video frames, grouped by policy."""


@bank_group.command("add")
@click.option("--policy", required=True, help="Policy the exemplar belongs to (created if new).")
@click.option("--text", "text", default=None, help="A text description of the content.")
@click.option("--image", "image", type=click.Path(), default=None, help="An image file.")
@click.option("--video", "video", type=click.Path(), default=None, help="A video: one exemplar per sampled frame.")
@click.option("--sampler", default=None, help="Frame sampler for --video.")
@click.option("--note", default="", help="Free text kept with the exemplar.")
@click.option("--added-by", default=None, help="Who adds it (default: the current user).")
@click.option("--threshold", type=float, default=None,
              help="Threshold of the policy when it is created here (default: bank.default_threshold).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def bank_add(ctx: click.Context, policy: str, text: str | None, image: str | None, video: str | None,
             sampler: str | None, note: str, added_by: str | None, threshold: float | None,
             as_json: bool) -> None:
    """Add a text, image or video exemplar to a policy. The same content twice is a no-op."""
    given = [x for x in (text, image, video) if x is not None]
    if len(given) != 1:
        raise ConfigError("give exactly one of --text, --image or --video")
    check_policy_name(policy)
    app = get_app(ctx)
    bank = app.bank()
    if text is not None:
        items = [text_exemplar(app.encoder, policy, text, note=note, added_by=added_by)]
    elif image is not None:
        items = [image_exemplar(app.encoder, policy, image, note=note, added_by=added_by)]
    else:
        items = video_exemplars(app.encoder, app.sampler(sampler), policy, video, limits=app.limits,
                                note=note, added_by=added_by)
    pol, created = bank.ensure_policy(policy, threshold if threshold is not None else app.settings.bank.default_threshold)
    if created:
        err_console.print(f"created policy {pol.name!r} with threshold {pol.threshold:g} (rule {pol.rule})")
    results = [bank.add(ex, vec) for ex, vec in items]
    for r in results:
        if as_json:
            emit_json({**r.exemplar.to_dict(), "created": r.created})
        else:
            what = "added" if r.created else "already present (no change)"
            out_console.print(f"{what}: {r.exemplar.exemplar_id}  {r.exemplar.kind}  {_short(r.exemplar.source)}")


@bank_group.command("list")
@click.option("--policy", default=None, help="Only this policy.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per exemplar.")
@click.pass_context
def bank_list(ctx: click.Context, policy: str | None, as_json: bool) -> None:
    """List exemplars, with counts per policy."""
    bank = get_app(ctx).bank(with_encoder=False)
    exemplars = bank.list(policy=policy)
    if as_json:
        for ex in exemplars:
            emit_json(ex.to_dict())
        return
    table = Table(title=f"exemplars ({bank.model_id or 'empty bank'})", title_justify="left")
    for col in ("id", "policy", "kind", "source", "note", "added by", "added", "enabled"):
        table.add_column(col, overflow="fold")
    for ex in exemplars:
        table.add_row(ex.exemplar_id, ex.policy, ex.kind, _short(ex.source, 60), ex.note, ex.added_by,
                      format_time(ex.added_at), "yes" if ex.enabled else "no")
    out_console.print(table)
    policies = {p.name: p for p in bank.list_policies()}
    counts = bank.counts()
    summary = Table(title="policies", title_justify="left")
    for col in ("policy", "threshold", "rule", "exemplars", "enabled"):
        summary.add_column(col)
    for name, p in policies.items():
        c = counts.get(name, {"total": 0, "enabled": 0})
        summary.add_row(name, f"{p.threshold:g}", str(p.rule), str(c["total"]), str(c["enabled"]))
    out_console.print(summary)


@bank_group.command("remove")
@click.argument("exemplar_id")
@click.pass_context
def bank_remove(ctx: click.Context, exemplar_id: str) -> None:
    """Remove an exemplar by id (or a unique prefix of it)."""
    ex = get_app(ctx).bank(with_encoder=False).remove(exemplar_id)
    out_console.print(f"removed {ex.exemplar_id} ({ex.policy}, {ex.kind}: {_short(ex.source)})")


def _short(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


COMMANDS = [bank_group]
