"""``sludge bank``: administer the exemplar bank (embedded, or Redis when SLUDGE_REDIS_URL is set).

Every change is recorded in the bank's append-only audit log with the actor
(``--actor``, default the OS user); ``sludge bank audit`` shows it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.table import Table

from indexer.errors import ConfigError, MediaError, SludgeError
from ops.app import err_console
from ops.cli.context import get_app
from ops.cli.output import VIDEO_EXTENSIONS, emit_json, out_console
from ops.usecases.bank import add_exemplars, exemplars_for
from ops.usecases.screen import file_evidence
from ops.usecases.times import format_time
from search.bank import ExemplarBank
from search.exemplars import IMAGE_EXTENSIONS, reembed
from search.signals import frame_score, match_frames
from search.types import Exemplar, Policy, Rule, check_policy_name
from search.verdict import calibrate, video_score

ACTOR = click.option("--actor", default=None, help="Who makes the change, for the audit log (default: the OS user).")


@click.group("bank")
def bank_group() -> None:
    """The exemplar bank: known-bad texts, images and video frames, grouped by policy."""


# -- add ----------------------------------------------------------------------------------------


def _read_jsonl(path: str) -> list[tuple[int, dict[str, Any]]]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: no such file")
    out = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path} line {n}: not JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise ConfigError(f"{path} line {n}: expected a JSON object")
        out.append((n, obj))
    return out


@bank_group.command("add")
@click.option("--policy", required=True, help="Policy the exemplar belongs to (created if new, see --threshold).")
@click.option("--text", "text", default=None, help="A text description of the content.")
@click.option("--image", "image", type=click.Path(), default=None, help="An image file.")
@click.option("--video", "video", type=click.Path(), default=None, help="A video: one exemplar per sampled frame.")
@click.option("--from-jsonl", "from_jsonl", type=click.Path(), default=None,
              help="One exemplar per line: {\"text\"|\"image\"|\"video\": ..., \"note\": ..., \"policy\": ...}.")
@click.option("--text-field", default="text", show_default=True,
              help="With --from-jsonl: the key holding the text (e.g. 'summary').")
@click.option("--sampler", default=None, help="Frame sampler for --video.")
@click.option("--note", default="", help="Free text kept with the exemplar.")
@click.option("--added-by", default=None, help="Who adds it (default: the current user).")
@click.option("--threshold", type=float, default=None,
              help="Threshold of the policy when it is created here (default: bank.default_threshold). "
                   "Prefer `sludge policy add`.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def bank_add(ctx: click.Context, policy: str, text: str | None, image: str | None, video: str | None,
             from_jsonl: str | None, text_field: str, sampler: str | None, note: str, added_by: str | None,
             threshold: float | None, as_json: bool) -> None:
    """Add exemplars to a policy. The same content twice is a no-op, and says so.

    Everything is read and embedded before anything is written: one bad item
    (an unreadable image, an empty or over-long text) fails the command and
    leaves the bank unchanged.
    """
    given = [x for x in (text, image, video, from_jsonl) if x is not None]
    if len(given) != 1:
        raise ConfigError("give exactly one of --text, --image, --video or --from-jsonl")
    check_policy_name(policy)
    app = get_app(ctx)
    bank = app.bank()
    if from_jsonl is None:
        items = exemplars_for(app, policy, text=text, image=image, video=video, sampler=sampler, note=note,
                              added_by=added_by)
    else:
        items, problems = [], []
        for n, obj in _read_jsonl(from_jsonl):
            kinds = [k for k in (text_field, "image", "video") if obj.get(k) is not None]
            if len(kinds) != 1:
                problems.append(f"line {n}: needs exactly one of {text_field!r}, 'image', 'video'")
                continue
            pol = obj.get("policy", policy)
            try:
                check_policy_name(pol)
                items.extend(exemplars_for(
                    app, pol, text=obj.get(text_field) if kinds[0] == text_field else None,
                    image=obj.get("image"), video=obj.get("video"), sampler=sampler,
                    note=str(obj.get("note", note)), added_by=obj.get("added_by", added_by)))
            except SludgeError as e:
                problems.append(f"line {n}: {e}")
        if problems:
            raise ConfigError(f"{from_jsonl}: nothing added; {len(problems)} bad line(s): " + "; ".join(problems[:10]))
    added = add_exemplars(app, bank, items, threshold=threshold, actor=added_by)
    for p in added.created_policies:
        err_console.print(f"created policy {p.name!r} with threshold {p.threshold:g} (rule {p.rule})")
    for r in added.results:
        if as_json:
            emit_json({**r.exemplar.to_dict(), "created": r.created})
        else:
            what = "added" if r.created else "already present (no change)"
            out_console.print(f"{what}: {r.exemplar.exemplar_id}  {r.exemplar.policy}  {r.exemplar.kind}  "
                              f"{_short(r.exemplar.source)}")


# -- read ------------------------------------------------------------------------------------------


@bank_group.command("list")
@click.option("--policy", default=None, help="Only this policy.")
@click.option("--kind", type=click.Choice(["text", "image", "frame"]), default=None, help="Only this kind.")
@click.option("--enabled/--disabled", "enabled", default=None, help="Only enabled (or disabled) exemplars.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per exemplar.")
@click.pass_context
def bank_list(ctx: click.Context, policy: str | None, kind: str | None, enabled: bool | None,
              as_json: bool) -> None:
    """List exemplars, with counts per policy."""
    bank = get_app(ctx).bank(with_encoder=False)
    exemplars = bank.list(policy=policy, enabled=enabled, kind=kind)
    if as_json:
        for ex in exemplars:
            emit_json(ex.to_dict())
        return
    table = Table(title=f"exemplars ({bank.backend}, {bank.model_id or 'empty bank'})", title_justify="left")
    for col in ("id", "policy", "kind", "source", "note", "added by", "added", "enabled"):
        table.add_column(col, overflow="fold")
    for ex in exemplars:
        table.add_row(ex.exemplar_id, ex.policy, ex.kind, _short(ex.source, 60), ex.note, ex.added_by,
                      format_time(ex.added_at), "yes" if ex.enabled else "no")
    out_console.print(table)
    counts = bank.counts()
    summary = Table(title="policies", title_justify="left")
    for col in ("policy", "threshold", "rule", "exemplars", "enabled"):
        summary.add_column(col)
    for p in bank.list_policies():
        if policy is not None and p.name != policy:
            continue
        c = counts.get(p.name, {"total": 0, "enabled": 0})
        summary.add_row(p.name, f"{p.threshold:g}", str(p.rule), str(c["total"]), str(c["enabled"]))
    out_console.print(summary)


@bank_group.command("show")
@click.argument("exemplar_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def bank_show(ctx: click.Context, exemplar_id: str, as_json: bool) -> None:
    """One exemplar (by id or a unique prefix) and its history."""
    bank = get_app(ctx).bank(with_encoder=False)
    ex = bank.resolve(exemplar_id)
    history = bank.audit(limit=20, target=ex.exemplar_id)
    if as_json:
        emit_json({**ex.to_dict(), "history": [h.to_dict() for h in history]})
        return
    table = Table(show_header=False, title=f"exemplar {ex.exemplar_id}", title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for k, v in ex.to_dict().items():
        table.add_row(k, format_time(v) if k == "added_at" else str(v))
    out_console.print(table)
    for h in history:
        out_console.print(f"{format_time(h.ts)}  {h.actor}  {h.action}")


def _set_enabled(ctx: click.Context, exemplar_id: str, enabled: bool, actor: str | None) -> None:
    bank = get_app(ctx).bank(with_encoder=False)
    before = bank.resolve(exemplar_id)
    ex = bank.set_enabled(before.exemplar_id, enabled, actor=actor)
    state = "enabled" if enabled else "disabled"
    if before.enabled == enabled:
        out_console.print(f"{ex.exemplar_id} was already {state} (no change)")
    else:
        out_console.print(f"{state} {ex.exemplar_id} ({ex.policy}, {ex.kind}: {_short(ex.source)})")


@bank_group.command("enable")
@click.argument("exemplar_id")
@ACTOR
@click.pass_context
def bank_enable(ctx: click.Context, exemplar_id: str, actor: str | None) -> None:
    """Match against this exemplar again."""
    _set_enabled(ctx, exemplar_id, True, actor)


@bank_group.command("disable")
@click.argument("exemplar_id")
@ACTOR
@click.pass_context
def bank_disable(ctx: click.Context, exemplar_id: str, actor: str | None) -> None:
    """Stop matching against this exemplar, keeping it (and its history) in the bank."""
    _set_enabled(ctx, exemplar_id, False, actor)


@bank_group.command("remove")
@click.argument("exemplar_id")
@ACTOR
@click.pass_context
def bank_remove(ctx: click.Context, exemplar_id: str, actor: str | None) -> None:
    """Remove an exemplar by id (or a unique prefix of it). The audit log keeps what it was."""
    ex = get_app(ctx).bank(with_encoder=False).remove(exemplar_id, actor=actor)
    out_console.print(f"removed {ex.exemplar_id} ({ex.policy}, {ex.kind}: {_short(ex.source)})")


@bank_group.command("audit")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@click.option("--id", "target", default=None, help="Only changes to this exemplar id or policy name.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per change.")
@click.pass_context
def bank_audit(ctx: click.Context, limit: int, target: str | None, as_json: bool) -> None:
    """The append-only log of changes, newest first: time, actor, action, item, before → after."""
    entries = get_app(ctx).bank(with_encoder=False).audit(limit=limit, target=target)
    if as_json:
        for e in entries:
            emit_json(e.to_dict())
        return
    table = Table(title="audit log (newest first)", title_justify="left")
    for col in ("time", "actor", "action", "target", "change"):
        table.add_column(col, overflow="fold")
    for e in entries:
        table.add_row(format_time(e.ts), e.actor, e.action, e.target, _diff(e.before, e.after))
    out_console.print(table)


def _diff(before: dict | None, after: dict | None) -> str:
    if before is None and after is not None:
        return "new: " + ", ".join(f"{k}={_short(str(v), 30)}" for k, v in after.items()
                                   if k in ("policy", "kind", "source", "threshold", "rule", "model_id"))
    if after is None and before is not None:
        return "removed: " + _short(str(before.get("source", before)), 60)
    assert before is not None and after is not None
    changed = [f"{k}: {before.get(k)} → {after.get(k)}" for k in sorted(set(before) | set(after))
               if before.get(k) != after.get(k) and k not in ("updated_at",)]
    return "; ".join(changed) or "(no field changed)"


@bank_group.command("info")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def bank_info(ctx: click.Context, as_json: bool) -> None:
    """Where the bank lives, its model and index, and whether settings ask for a rebuild."""
    info = get_app(ctx).bank(with_encoder=False).info()
    if as_json:
        emit_json(info)
        return
    for k, v in info.items():
        out_console.print(f"{k}: {v}")
    if info.get("settings_differ"):
        out_console.print(f"[yellow]the index was built with other settings ({info['settings_differ']}); "
                          "`sludge bank reindex` rebuilds it[/]")


@bank_group.command("reindex")
@ACTOR
@click.pass_context
def bank_reindex(ctx: click.Context, actor: str | None) -> None:
    """Rebuild the bank for the configured encoder and index settings, then switch to it atomically.

    With the same encoder the vectors are copied (a new HNSW graph, e.g. after
    changing redis.hnsw_m); with another encoder every exemplar is embedded again
    from its source. Queries keep using the old index until the new one is complete.
    """
    app = get_app(ctx)
    bank = app.bank(with_encoder=False)
    enc = app.encoder

    def fn(ex: Exemplar, old: np.ndarray | None) -> np.ndarray:
        return old if old is not None else reembed(enc, ex, app.settings.exemplars_dir)

    with err_console.status("rebuilding the bank …"):
        rep = bank.rebuild(enc.model_id, enc.dim, fn, actor=actor)
    out_console.print(f"rebuilt {rep.exemplars} exemplars ({rep.reembedded} re-embedded, {rep.copied} copied) "
                      f"for {rep.new_model} in {rep.seconds:.1f} s" + (f"; live index {rep.index}" if rep.index else ""))


# -- export / import ----------------------------------------------------------------------------------


@bank_group.command("export")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None, help="File (default: stdout).")
@click.option("--policy", default=None, help="Only this policy.")
@click.option("--vectors/--no-vectors", default=False, show_default=True,
              help="Include each exemplar's vector (else import re-embeds from the source).")
@click.pass_context
def bank_export(ctx: click.Context, out_path: str | None, policy: str | None, vectors: bool) -> None:
    """Policies and exemplars as JSONL: {"type": "policy", ...} lines, then {"type": "exemplar", ...}."""
    bank = get_app(ctx).bank(with_encoder=False)
    exemplars = bank.list(policy=policy)
    vecs = bank.vectors([e.exemplar_id for e in exemplars]) if vectors else {}
    fh = open(out_path, "w", encoding="utf-8") if out_path else sys.stdout
    try:
        for p in bank.list_policies():
            if policy is None or p.name == policy:
                fh.write(json.dumps({"type": "policy", **p.to_dict()}) + "\n")
        for ex in exemplars:
            row: dict[str, Any] = {"type": "exemplar", **ex.to_dict()}
            if ex.exemplar_id in vecs:
                row["vector"] = [round(float(x), 7) for x in vecs[ex.exemplar_id]]
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        if out_path:
            fh.close()
    if out_path:
        err_console.print(f"exported {len(exemplars)} exemplars to {out_path}")


@bank_group.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@ACTOR
@click.pass_context
def bank_import(ctx: click.Context, path: str, actor: str | None) -> None:
    """Import a `bank export` file. Vectors of this bank's model are kept; others are re-embedded.

    Every line is checked (and re-embedded where needed) before anything is
    written; the same exemplar twice is a no-op.
    """
    app = get_app(ctx)
    bank = app.bank()
    enc = app.encoder
    policies: list[Policy] = []
    items: list[tuple[Exemplar, np.ndarray]] = []
    problems: list[str] = []
    reembedded = 0
    fields = set(Exemplar.__dataclass_fields__)
    for n, obj in _read_jsonl(path):
        try:
            kind = obj.get("type", "exemplar")
            if kind == "policy":
                check_policy_name(obj.get("name", ""))
                policies.append(Policy(obj["name"], float(obj["threshold"]), Rule.parse(obj.get("rule", "best")),
                                       obj.get("description", "")))
                continue
            ex = Exemplar(**{k: v for k, v in obj.items() if k in fields})
            check_policy_name(ex.policy)
            vec = obj.get("vector")
            if vec is not None and ex.model_id == enc.model_id and len(vec) == enc.dim:
                v = np.asarray(vec, dtype=np.float32)
            else:
                ex.model_id = enc.model_id
                v = reembed(enc, ex, app.settings.exemplars_dir)
                reembedded += 1
            items.append((ex, v))
        except (SludgeError, KeyError, TypeError, ValueError) as e:
            problems.append(f"line {n}: {type(e).__name__ if not isinstance(e, SludgeError) else ''}{e}")
    known = {p.name for p in policies} | {p.name for p in bank.list_policies()}
    for ex, _ in items:
        if ex.policy not in known:
            problems.append(f"exemplar {ex.exemplar_id or ex.source[:40]}: unknown policy {ex.policy!r} "
                            "(not in the file nor in the bank)")
    if problems:
        raise ConfigError(f"{path}: nothing imported; {len(problems)} problem(s): " + "; ".join(problems[:10]))
    for p in policies:
        if bank.get_policy(p.name) is None:
            bank.put_policy(p, actor=actor)
    created = present = 0
    for ex, v in items:
        r = bank.add(ex, v, actor=actor)
        created += r.created
        present += not r.created
    out_console.print(f"imported {created} exemplars ({present} already present, {reembedded} re-embedded with "
                      f"{enc.model_id}); {len(policies)} policies in the file")


# -- calibrate ------------------------------------------------------------------------------------------


def _media_files(folder: str) -> list[Path]:
    p = Path(folder)
    if not p.is_dir():
        raise ConfigError(f"{folder}: not a directory")
    files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")
                   and f.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)
    if not files:
        raise ConfigError(f"{folder}: no images or videos in it")
    return files


def _labelled_files(bank: ExemplarBank, policy: str, which: str) -> list[Path]:
    """The videos reviewers confirmed (positives) or dismissed (negatives) for a policy."""
    want = "confirm" if which == "positives" else "dismiss"
    return [Path(lab.path) for lab in bank.latest_labels(policy) if lab.verdict == want and lab.path]


def _score_file(app, bank: ExemplarBank, policy: Policy, path: Path, k: int) -> float | None:
    """The file's score for the policy as ``check`` would reach it: per frame, a decisive match (PDQ) passes
    any threshold, else the best cosine; then the policy's rule over the frames."""
    video = file_evidence(app, path)
    scores = [sc for _, ms in match_frames(bank, video, k, policies=[policy.name])
              if (sc := frame_score(ms)) is not None]
    return video_score(policy.rule, scores)


@bank_group.command("calibrate")
@click.option("--policy", required=True)
@click.option("--positives", type=click.Path(), help="Folder of images/videos that should match.")
@click.option("--negatives", type=click.Path(), help="Folder of images/videos that should not.")
@click.option("--from-labels", is_flag=True,
              help="Use reviewers' labels of this policy instead of folders: confirmed videos are positives, "
                   "dismissed ones negatives (the latest label per video).")
@click.option("--target-precision", type=click.FloatRange(0, 1), default=0.95, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def bank_calibrate(ctx: click.Context, policy: str, positives: str | None, negatives: str | None,
                   from_labels: bool, target_precision: float, as_json: bool) -> None:
    """Score both folders against the policy's exemplars; precision/recall per threshold.

    The last line names the lowest threshold that reaches the target
    precision (the most recall at that precision); `sludge policy set` applies it.
    """
    app = get_app(ctx)
    bank = app.bank()
    pol = bank.require_policy(policy)
    k = app.settings.bank.k
    scored: dict[str, list[tuple[str, float | None]]] = {}
    failed: list[str] = []
    if from_labels == bool(positives or negatives) or (not from_labels and not (positives and negatives)):
        raise click.UsageError("give --positives DIR and --negatives DIR, or --from-labels")
    for label, folder in (("positives", positives), ("negatives", negatives)):
        files = _labelled_files(bank, pol.name, label) if from_labels else _media_files(folder)
        scored[label] = []
        with err_console.status(f"scoring {len(files)} {label} …"):
            for f in files:
                try:
                    scored[label].append((str(f), _score_file(app, bank, pol, f, k)))
                except MediaError as e:
                    failed.append(str(e))
    cal = calibrate([s for _, s in scored["positives"]], [s for _, s in scored["negatives"]],
                    target_precision=target_precision)
    if as_json:
        emit_json({"policy": pol.name, "rule": str(pol.rule), "current_threshold": pol.threshold,
                   "skipped": failed, "scores": scored, **cal.to_dict()})
        return
    table = Table(title=f"calibration of {pol.name} (rule {pol.rule}; {cal.positives} positives, "
                        f"{cal.negatives} negatives)", title_justify="left")
    for col in ("threshold", "precision", "recall", "flagged +", "flagged −"):
        table.add_column(col, justify="right")
    shown = [r for r in cal.rows if abs(r.threshold * 20 - round(r.threshold * 20)) < 1e-6
             and (r.flagged_positives or r.flagged_negatives)]
    if cal.chosen is not None and cal.chosen not in shown:
        shown = sorted(shown + [cal.chosen], key=lambda r: r.threshold)
    for r in shown:
        style = "bold" if r is cal.chosen else ""
        table.add_row(f"{r.threshold:.3f}", "-" if r.precision is None else f"{r.precision:.3f}",
                      f"{r.recall:.3f}", str(r.flagged_positives), str(r.flagged_negatives), style=style)
    out_console.print(table)
    for f in failed:
        out_console.print(f"[yellow]skipped:[/] {f}")
    if cal.chosen is None:
        out_console.print(f"no threshold reaches precision {target_precision:g} on these sets "
                          f"(current threshold {pol.threshold:g})")
    else:
        c = cal.chosen
        out_console.print(f"threshold {c.threshold:.3f} reaches precision {c.precision:.3f} at recall "
                          f"{c.recall:.3f} (current {pol.threshold:g}): "
                          f"sludge policy set {pol.name} --threshold {c.threshold:.3f}")


def _short(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


COMMANDS = [bank_group]
