"""``sludge policy``: the bank's policies (threshold and verdict rule), audited like exemplars."""

from __future__ import annotations

import click
from rich.table import Table

from indexer.errors import ConfigError
from ops.cli.context import get_app
from ops.cli.output import emit_json, out_console
from ops.usecases.times import format_time
from search.types import Policy, Rule

THRESHOLD = click.FloatRange(-1.0, 1.0)


class RuleParam(click.ParamType):
    name = "RULE"

    def convert(self, value, param, ctx):
        if isinstance(value, Rule):
            return value
        try:
            return Rule.parse(str(value))
        except ConfigError as e:
            self.fail(str(e), param, ctx)


@click.group("policy")
def policy_group() -> None:
    """Policies: a cosine threshold and a rule turning frame matches into a video verdict."""


@policy_group.command("add")
@click.argument("name")
@click.option("--threshold", type=THRESHOLD, required=True, help="Cosine similarity a match must reach.")
@click.option("--rule", type=RuleParam(), default="best", show_default=True,
              help="'best' (the best frame decides) or 'k_of_n:K' (at least K frames must match).")
@click.option("--description", default="")
@click.option("--actor", default=None, help="Who makes the change (default: the OS user).")
@click.pass_context
def policy_add(ctx: click.Context, name: str, threshold: float, rule: Rule, description: str,
               actor: str | None) -> None:
    """Create a policy (an existing name is an error: use `policy set`)."""
    bank = get_app(ctx).bank(with_encoder=False)
    p = bank.create_policy(Policy(name, threshold, rule, description), actor=actor)
    out_console.print(f"created policy {p.name} (threshold {p.threshold:g}, rule {p.rule})")


@policy_group.command("set")
@click.argument("name")
@click.option("--threshold", type=THRESHOLD, default=None)
@click.option("--rule", type=RuleParam(), default=None)
@click.option("--description", default=None)
@click.option("--actor", default=None, help="Who makes the change (default: the OS user).")
@click.pass_context
def policy_set(ctx: click.Context, name: str, threshold: float | None, rule: Rule | None,
               description: str | None, actor: str | None) -> None:
    """Change a policy's threshold, rule or description."""
    if threshold is None and rule is None and description is None:
        raise ConfigError("nothing to change: give --threshold, --rule or --description")
    bank = get_app(ctx).bank(with_encoder=False)
    p = bank.require_policy(name)
    new = Policy(p.name, p.threshold if threshold is None else threshold, p.rule if rule is None else rule,
                 p.description if description is None else description, p.created_at)
    got = bank.put_policy(new, actor=actor)
    out_console.print(f"policy {got.name}: threshold {p.threshold:g} → {got.threshold:g}, "
                      f"rule {p.rule} → {got.rule}")


@policy_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per policy.")
@click.pass_context
def policy_list(ctx: click.Context, as_json: bool) -> None:
    """Policies with their thresholds, rules and exemplar counts."""
    bank = get_app(ctx).bank(with_encoder=False)
    counts = bank.counts()
    policies = bank.list_policies()
    if as_json:
        for p in policies:
            emit_json({**p.to_dict(), **counts.get(p.name, {"total": 0, "enabled": 0})})
        return
    table = Table(title="policies", title_justify="left")
    for col in ("policy", "threshold", "rule", "exemplars", "enabled", "updated", "description"):
        table.add_column(col, overflow="fold")
    for p in policies:
        c = counts.get(p.name, {"total": 0, "enabled": 0})
        table.add_row(p.name, f"{p.threshold:g}", str(p.rule), str(c["total"]), str(c["enabled"]),
                      format_time(p.updated_at), p.description)
    out_console.print(table)


COMMANDS = [policy_group]
