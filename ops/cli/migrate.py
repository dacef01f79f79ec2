"""``sludge migrate``: move the bank and the history to a new embedding model while they keep answering."""

from __future__ import annotations

import click
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ops.app import err_console
from ops.cli.context import get_app
from ops.cli.output import emit_json, out_console


@click.command("migrate")
@click.option("--model", default=None, help="open_clip architecture of the new model (default: encoder.model).")
@click.option("--pretrained", default=None,
              help="Its weights: an open_clip tag, a checkpoint file or a folder from `sludge encoder finetune`.")
@click.option("--random-weights", is_flag=True, help="The new model with seeded random weights (tests, demos).")
@click.option("--eval-pairs", "eval_pairs", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="Pairs (JSONL) to gate the switch on: refused when the new model's mean recall is lower.")
@click.option("--eval-split", type=click.Choice(["train", "val", "test", "all"]), default="test", show_default=True)
@click.option("--batch", "batch_videos", type=click.IntRange(1, 10_000), default=16, show_default=True,
              help="Videos embedded and stored per step (the cursor advances once per step).")
@click.option("--accept-losses", is_flag=True,
              help="Switch even when some videos could not be embedded again (their sources and thumbnails are gone).")
@click.option("--status", "action", flag_value="status", help="Show the generations and any migration under way.")
@click.option("--rollback", "action", flag_value="rollback", help="Switch back to the generation kept by the last migration.")
@click.option("--finish", "action", flag_value="finish", help="Drop the generation kept by the last migration.")
@click.option("--abort", "action", flag_value="abort", help="Stop a migration that has not switched and drop its generation.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def migrate_cmd(ctx: click.Context, model: str | None, pretrained: str | None, random_weights: bool,
                eval_pairs: tuple[str, ...], eval_split: str, batch_videos: int, accept_losses: bool,
                action: str | None, as_json: bool) -> None:
    """Re-embed every exemplar and stored frame with a new model into a new generation, then switch.

    The live generation keeps answering throughout; a killed run resumes where it stopped when run
    again with the same model; the old generation is kept for --rollback until --finish. Readers whose
    configuration does not name a model follow the switch.
    """
    from ops.usecases.migrate import Migrator

    app = get_app(ctx)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=err_console, transient=True, disable=as_json) as bar:
        task = bar.add_task("migrating …")
        m = Migrator(app, batch_videos=batch_videos,
                     progress=lambda v, f: bar.update(task, description=f"{v} videos, {f} frames re-embedded"))
        if action is None:
            if not (model or pretrained or random_weights):
                raise click.UsageError("name the new model (--model/--pretrained), or one of --status, "
                                       "--rollback, --finish, --abort")
            s = app.settings.encoder
            update = {"model": model or s.model, "random_weights": random_weights}
            if pretrained is not None:
                update["pretrained"] = pretrained
            new = s.model_copy(update=update)
            rep = m.migrate(new, eval_pairs=list(eval_pairs) or None,
                            eval_split=None if eval_split == "all" else eval_split, accept_losses=accept_losses)
        else:
            rep = getattr(m, action)()
    if as_json:
        emit_json(rep.to_dict())
        return
    if rep.gate:
        out_console.print(rep.gate["message"])
    st = rep.state
    if rep.action == "migrate" and st is not None:
        out_console.print(f"copied {st.videos} videos, {st.frames} frames ({st.from_source} videos from their source, "
                          f"{st.from_thumbnails} from thumbnails) in {st.seconds:.1f} s"
                          + (f"; {rep.caught_up} indexed meanwhile caught up" if rep.caught_up else ""))
        for vid, why in list(st.failed.items())[:20]:
            err_console.print(f"[yellow]not copied:[/] {vid}: {why}")
    if rep.bank:
        out_console.print(f"bank: {rep.bank}")
    for note in rep.notes:
        out_console.print(note)
    out_console.print(f"active: {rep.active.model_id} ({rep.active.name or 'original'})"
                      + (f"; kept for --rollback: {rep.previous.model_id}" if rep.previous else ""))
    if rep.action == "status" and st is not None:
        out_console.print(f"under way: to {st.target.model_id}, phase {st.phase}, {st.videos} videos / {st.frames} "
                          f"frames copied, {len(st.failed)} failed; run `sludge migrate` with the same model to resume")


COMMANDS = [migrate_cmd]
