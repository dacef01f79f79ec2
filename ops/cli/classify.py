"""``sludge classify VIDEO...``: the confirm model (Visual-Qwen) on videos: per-frame answers, vote, verdict."""

from __future__ import annotations

import click
from rich.table import Table

from ops.cli.context import get_app
from ops.cli.output import emit_json, out_console
from ops.usecases.classify import classify_videos


@click.command("classify")
@click.argument("videos", nargs=-1, required=True, type=click.Path())
@click.option("--sampler", default=None, help="Frame sampler (default: classifier.sampler, uniform:4 as the card).")
@click.option("--model", "model", default=None,
              help="Export id/folder or a trained folder (default: classifier.model).")
@click.option("--no-transcript", is_flag=True, help="Leave the audio transcript out of the prompt (v1-style).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per video, as a list.")
@click.pass_context
def classify_cmd(ctx: click.Context, videos: tuple[str, ...], sampler: str | None, model: str | None,
                 no_transcript: bool, as_json: bool) -> None:
    """Ask Visual-Qwen about each sampled frame; the video is sludge on a strict majority of yes.

    Frames whose answer is neither yes nor no are counted as unparseable and
    reported (dropped from the vote unless classifier.unparseable = "no").
    Ties are not sludge. Exit status 1 when any video failed.
    """
    app = get_app(ctx)
    if model:
        app.settings.classifier.model = model
    use_tr = app.settings.classifier.use_transcript and not no_transcript
    out = classify_videos(app, list(videos), sampler=sampler, use_transcript=use_tr)
    docs, failed = out.results, out.failed
    if as_json:
        emit_json(docs + [{"path": f["path"], "error": f["error"]} for f in failed])
    else:
        for d in docs:
            vote = d["vote"]
            style = "bold red" if d["verdict"] == "sludge" else "green"
            table = Table(title=f"{d['path']}: [{style}]{d['verdict']}[/]  (yes {vote['yes']}, no {vote['no']}, "
                                f"unparseable {vote['unparseable']}; {d['seconds']:.2f}s)", title_justify="left")
            for col in ("t (s)", "answer", "text"):
                table.add_column(col, overflow="fold")
            for f in d["frames"]:
                table.add_row(f"{f['ts']:.2f}", f["answer"], f["text"])
            out_console.print(table)
        for f in failed:
            out_console.print(f"[bold red]failed:[/] {f['error']}")
    if failed:
        ctx.exit(1)


COMMANDS = [classify_cmd]
