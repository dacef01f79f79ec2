"""``sludge index``: files and folders into the frame history."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from indexer.errors import MediaError, SludgeError
from indexer.identity import file_sha256
from indexer.media import check_media_file
from ops.app import err_console
from ops.cli.main import get_app
from ops.cli.output import emit_json, expand_paths, out_console


@dataclass
class Outcome:
    path: str
    status: str  # indexed | present | failed
    reason: str = ""
    video_id: str | None = None
    frames: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


@click.command("index")
@click.argument("paths", nargs=-1, required=True)
@click.option("-r", "--recursive", is_flag=True, help="Descend into sub-folders.")
@click.option("--sampler", default=None, help="Frame sampler: uniform:N | fps:R,max:M | scene[:T][,max:M].")
@click.option("--source", default=None, help="Channel or upload source recorded with each video.")
@click.option("--no-transcribe", is_flag=True, help="Skip speech recognition.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file on stdout.")
@click.pass_context
def index_cmd(ctx: click.Context, paths: tuple[str, ...], recursive: bool, sampler: str | None,
              source: str | None, no_transcribe: bool, as_json: bool) -> None:
    """Index videos (files or folders) into the frame history.

    A video already in the history (same bytes) is skipped. A file that fails
    is reported with its reason and the batch goes on; the exit status is 1
    when anything failed.
    """
    app = get_app(ctx)
    indexer = app.indexer(sampler, transcribe=not no_transcribe)  # bad sampler fails here, before work
    history = app.history()
    items = list(expand_paths(paths, recursive))
    outcomes: list[Outcome] = []
    with Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err_console, transient=True, disable=not err_console.is_terminal,
    ) as progress:
        task = progress.add_task("indexing", total=len(items))
        for path, problem in items:
            progress.update(task, description=f"indexing {path[-40:]}")
            outcome = _index_one(indexer, history, path, problem, source)
            outcomes.append(outcome)
            if as_json:
                emit_json(outcome.__dict__)
            progress.advance(task)
    if not as_json:
        _summary(outcomes)
    for note in getattr(history, "notices", []):  # server backends: videos kept in the local outbox
        err_console.print(f"[bold yellow]note:[/] {note}")
    if any(o.status == "failed" for o in outcomes):
        sys.exit(1)


def _index_one(indexer, history, path: str, problem: str | None, source: str | None) -> Outcome:
    if problem:
        return Outcome(path, "failed", problem)
    t0 = time.perf_counter()
    try:
        check_media_file(path, indexer.limits.max_file_bytes)  # before hashing: FIFOs, huge files
        vid = file_sha256(path)
        if history.has_video(vid):
            return Outcome(path, "present", video_id=vid)
        record = indexer.process(path, video_id=vid, source=source)
        added = history.add_video(record)
        return Outcome(path, "indexed" if added else "present", video_id=vid, frames=len(record.frames),
                       seconds=time.perf_counter() - t0, warnings=record.warnings)
    except IsADirectoryError:
        return Outcome(path, "failed", "is a directory")
    except OSError as e:
        return Outcome(path, "failed", f"cannot read: {e.strerror or e}")
    except MediaError as e:
        return Outcome(path, "failed", e.reason)
    except SludgeError as e:
        if _fatal(e):
            raise
        return Outcome(path, "failed", str(e))


def _fatal(e: SludgeError) -> bool:
    """Errors that would fail every item the same way stop the batch at once."""
    from indexer.errors import ModelMismatchError, WeightsUnavailableError

    return isinstance(e, (ModelMismatchError, WeightsUnavailableError))


def _summary(outcomes: list[Outcome]) -> None:
    counts = {s: sum(1 for o in outcomes if o.status == s) for s in ("indexed", "present", "failed")}
    shown = outcomes if len(outcomes) <= 50 else [o for o in outcomes if o.status == "failed" or o.warnings]
    if shown:
        table = Table(title="index", title_justify="left")
        table.add_column("file", overflow="fold")
        table.add_column("status")
        table.add_column("frames", justify="right")
        table.add_column("seconds", justify="right")
        table.add_column("reason / notes", overflow="fold")
        style = {"indexed": "green", "present": "cyan", "failed": "bold red"}
        for o in shown:
            note = o.reason or "; ".join(o.warnings)
            table.add_row(o.path, f"[{style[o.status]}]{o.status}[/]", str(o.frames or ""),
                          f"{o.seconds:.1f}" if o.seconds else "", note)
        out_console.print(table)
    out_console.print(
        f"indexed {counts['indexed']}, already present {counts['present']}, failed {counts['failed']}"
    )


COMMANDS = [index_cmd]
