"""``sludge index``: files and folders into the frame history."""

from __future__ import annotations

import sys
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from indexer.errors import MediaError, SludgeError
from indexer.identity import file_sha256
from indexer.media import check_media_file
from ops.app import err_console
from ops.cli.context import get_app
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
@click.option("--sequential", is_flag=True,
              help="One video at a time, stage after stage (default: index.overlap, stages overlapped).")
@click.option("--decode-threads", type=click.IntRange(1, 64), default=None,
              help="Overlapped: threads decoding (default: index.decode_threads).")
@click.option("--transcribe-threads", type=click.IntRange(1, 64), default=None,
              help="Overlapped: threads transcribing (default: index.transcribe_threads).")
@click.pass_context
def index_cmd(ctx: click.Context, paths: tuple[str, ...], recursive: bool, sampler: str | None,
              source: str | None, no_transcribe: bool, as_json: bool, sequential: bool,
              decode_threads: int | None, transcribe_threads: int | None) -> None:
    """Index videos (files or folders) into the frame history.

    A video already in the history (same bytes) is skipped. A file that fails
    is reported with its reason and the batch goes on; the exit status is 1
    when anything failed. By default decoding, encoding, transcription and
    storage overlap across videos (results are listed as videos finish);
    --sequential indexes one video after the other.
    """
    app = get_app(ctx)
    indexer = app.indexer(sampler, transcribe=not no_transcribe)  # bad sampler fails here, before work
    history = app.history()
    items = list(expand_paths(paths, recursive))
    outcomes: list[Outcome] = []
    s = app.settings.index
    overlap = s.overlap and not sequential
    with Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err_console, transient=True, disable=not err_console.is_terminal,
    ) as progress:
        task = progress.add_task("indexing", total=len(items))

        def done(outcome: Outcome) -> None:
            outcomes.append(outcome)
            if as_json:
                emit_json(outcome.__dict__)
            progress.advance(task)

        if overlap:
            from indexer.overlap import OverlapConfig

            config = OverlapConfig(decode_threads=decode_threads or s.decode_threads,
                                   transcribe_threads=transcribe_threads or s.transcribe_threads,
                                   queue_size=s.queue_size)
            _index_overlapped(indexer, history, items, source, config, done)
        else:
            for path, problem in items:
                progress.update(task, description=f"indexing {path[-40:]}")
                done(_index_one(indexer, history, path, problem, source))
    if not as_json:
        order = {path: i for i, (path, _) in enumerate(items)}
        _summary(sorted(outcomes, key=lambda o: order.get(o.path, 0)))
    for note in getattr(history, "notices", []):  # server backends: videos kept in the local outbox
        err_console.print(f"[bold yellow]note:[/] {note}")
    if any(o.status == "failed" for o in outcomes):
        sys.exit(1)


def _index_overlapped(indexer, history, items: list[tuple[str, str | None]], source: str | None,
                      config, done) -> None:
    """The overlapped pipeline (indexer.overlap) with the same checks and outcomes as :func:`_index_one`."""
    from indexer.overlap import Job, OverlappedIndexer

    lock = threading.Lock()  # has_video (decode threads) and add_video (the store thread) take turns

    def prepare(job: Job) -> bool:
        check_media_file(job.path, indexer.limits.max_file_bytes)  # before hashing: FIFOs, huge files
        job.video_id = file_sha256(job.path)
        with lock:
            return not history.has_video(job.video_id)

    def store(record) -> bool:
        with lock:
            return history.add_video(record)

    jobs = []
    for path, problem in items:
        if problem:
            done(Outcome(path, "failed", problem))
        else:
            jobs.append(Job(path, source=source))
    # closing: a fatal error (or Ctrl-C) stops the feeding and joins the stages before it propagates
    with closing(OverlappedIndexer(indexer, config, prepare=prepare, store=store).run(jobs)) as results:
        for r in results:
            path = r.job.path
            if r.status == "failed":
                done(_failure(path, r.error))
            elif r.record is None:  # found by prepare: nothing decoded
                done(Outcome(path, "present", video_id=r.video_id))
            else:
                done(Outcome(path, r.status, video_id=r.video_id, frames=len(r.record.frames),
                             seconds=r.seconds, warnings=r.record.warnings))


def _failure(path: str, e: BaseException) -> Outcome:
    """A failed item's outcome, as the sequential path reports it; errors that fail every item re-raise."""
    if isinstance(e, IsADirectoryError):
        return Outcome(path, "failed", "is a directory")
    if isinstance(e, OSError):
        return Outcome(path, "failed", f"cannot read: {e.strerror or e}")
    if isinstance(e, MediaError):
        return Outcome(path, "failed", e.reason)
    if isinstance(e, SludgeError):
        if _fatal(e):
            raise e
        return Outcome(path, "failed", str(e))
    # Anything else (a decoder or model error without a type of ours) fails this file, named, not the batch.
    return Outcome(path, "failed", f"{type(e).__name__}: {e}")


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
    from indexer.errors import WeightsUnavailableError
    from search.errors import ModelMismatchError

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
