"""``sludge sweep``: sweep a policy over every past upload and record its candidates."""

from __future__ import annotations

import click
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from indexer.errors import QueryError
from ops.app import err_console
from ops.cli.main import get_app
from ops.cli.output import TimeParam, emit_json, format_time, out_console
from search.exemplars import read_image
from search.history import HistoryFilter
from search.sweeps import run_sweep
from search.types import check_policy_name


@click.group("sweep", invoke_without_command=True)
@click.option("--policy", default=None, help="Policy the candidates are recorded under.")
@click.option("-q", "--query", default=None, help="Text describing what the policy targets.")
@click.option("--image", type=click.Path(), default=None, help="An example image instead of a text.")
@click.option("--since", type=TimeParam(), default=None, help="Only uploads at or after (ISO 8601 or 30d…).")
@click.option("--until", type=TimeParam(), default=None, help="Only uploads before.")
@click.option("--layout", "layouts", multiple=True, help="Only this layout (repeatable).")
@click.option("--source", "--channel", "sources", multiple=True, help="Only this channel/source (repeatable).")
@click.option("--decision", "decisions", multiple=True, help="Only this latest decision ('none': undecided).")
@click.option("--min-score", type=click.FloatRange(-1, 1), default=0.2, show_default=True,
              help="Cosine a frame must reach to make its video a candidate.")
@click.option("--page-size", type=click.IntRange(1, 10_000), default=500, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON object.")
@click.pass_context
def sweep_group(ctx: click.Context, policy: str | None, query: str | None, image: str | None,
                since: float | None, until: float | None, layouts: tuple[str, ...], sources: tuple[str, ...],
                decisions: tuple[str, ...], min_score: float, page_size: int, as_json: bool) -> None:
    """Sweep --policy NAME with --query TEXT over the whole history (exact scan, resumable).

    Every frame scoring at least --min-score makes its video a candidate,
    recorded with its score and evidence (matching timestamps, transcript
    snippet). An interrupted sweep resumes where it stopped; running it again
    adds nothing twice. `sludge sweep list --policy NAME` shows the candidates.
    """
    if ctx.invoked_subcommand is not None:
        return
    if policy is None or (query is None and image is None):
        raise click.UsageError("give --policy NAME and --query TEXT (or --image PATH)")
    if query is not None and image is not None:
        raise click.UsageError("give --query or --image, not both")
    check_policy_name(policy)
    app = get_app(ctx)
    if query is not None:
        if not query.strip():
            raise QueryError("the query is empty")
        if len(query) > app.settings.recall.max_query_chars:
            raise QueryError(f"the query has {len(query)} characters; at most "
                             f"{app.settings.recall.max_query_chars} are allowed")
    img = read_image(image) if image is not None else None
    vector = (app.encoder.embed_texts([query]) if query is not None else app.encoder.embed_images([img]))[0]
    history = app.history()
    where = HistoryFilter(since=since, until=until, layouts=layouts, sources=sources, decisions=decisions)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err_console,
                  transient=True, disable=not err_console.is_terminal) as progress:
        task = progress.add_task(f"sweeping {policy}", total=None)

        def on_page(pages: int, frames: int, new: int) -> None:
            progress.update(task, description=f"sweeping {policy}: {pages} pages, {frames} frames matched, "
                                              f"{new} new candidates")

        result = run_sweep(history, policy, vector, query=query or f"image:{image}", min_score=min_score,
                           where=where, page_size=page_size, on_page=on_page,
                           snippet_chars=app.settings.recall.snippet_chars)
    if as_json:
        emit_json(result.to_dict())
        return
    out_console.print(
        f"sweep {policy} ({'resumed' if result.resumed else 'from the start'}): {result.frames_matched} frames "
        f"matched in {result.pages} pages, {result.candidates_seen} videos, {result.candidates_new} new "
        f"candidates, {result.seconds:.1f} s")


@sweep_group.command("list")
@click.option("--policy", required=True)
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def sweep_list(ctx: click.Context, policy: str, limit: int, fmt: str) -> None:
    """The candidates a policy's sweeps recorded, best first."""
    cands = get_app(ctx).history(with_encoder=False).sweep_candidates(policy, limit=limit)
    if fmt == "json":
        emit_json([c.to_dict() for c in cands])
        return
    table = Table(title=f"sweep candidates: {policy}", title_justify="left")
    for col in ("#", "score", "video", "path", "frames (s)", "uploaded", "transcript"):
        table.add_column(col, overflow="fold")
    for i, c in enumerate(cands, 1):
        table.add_row(str(i), f"{c.score:.3f}", c.video_id[:12], c.path,
                      ", ".join(f"{t:.1f}" for t in c.timestamps[:6]), format_time(c.uploaded_at), c.snippet)
    out_console.print(table)
    if not cands:
        out_console.print("no candidates")


COMMANDS = [sweep_group]
