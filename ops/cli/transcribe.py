"""``sludge transcribe``: speech in each video's audio, as text with segments."""

from __future__ import annotations

import sys

import click

from indexer.errors import MediaError, NoAudioError, SludgeError
from indexer.records import EMPTY_TRANSCRIPT
from ops.app import err_console
from ops.cli.context import get_app
from ops.cli.output import emit_json, out_console


@click.command("transcribe")
@click.argument("videos", nargs=-1, required=True, type=click.Path())
@click.option("--language", default=None, help="ISO language code (default: detect).")
@click.option("--json", "as_json", is_flag=True,
              help="One object per line: path, text, language, has_speech, segments.")
@click.pass_context
def transcribe_cmd(ctx: click.Context, videos: tuple[str, ...], language: str | None, as_json: bool) -> None:
    """Transcribe the audio of each video. Silence or no audio gives an empty text, not an error."""
    app = get_app(ctx)
    if language:
        app.settings.transcriber.language = language
    app.settings.transcriber.enabled = True
    transcriber = app.transcriber
    failed = 0
    for path in videos:
        try:
            try:
                t = transcriber.transcribe(path)
            except NoAudioError:
                t = EMPTY_TRANSCRIPT
        except (MediaError, SludgeError) as e:
            failed += 1
            if as_json:
                emit_json({"path": path, "error": str(e)})
            else:
                err_console.print(f"[bold red]error:[/] {e}")
            continue
        if as_json:
            emit_json({"path": path, **t.to_dict()})
        else:
            lang = f" [{t.language}]" if t.language else ""
            body = t.text if t.has_speech else "(no speech)"
            out_console.print(f"[bold]{path}[/]{lang}: {body}")
    if failed:
        sys.exit(1)


COMMANDS = [transcribe_cmd]
