"""``sludge recall``: past videos ranked by similarity to a text (or an image)."""

from __future__ import annotations

import csv
import sys

import click
from rich.table import Table

from indexer.errors import ConfigError, QueryError
from ops.cli.main import get_app
from ops.cli.output import TimeParam, emit_json, format_time, out_console
from search.exemplars import read_image
from search.history import HistoryFilter


@click.command("recall")
@click.option("-q", "--query", default=None, help="Text describing what to find.")
@click.option("--image", type=click.Path(), default=None, help="Find frames similar to this image instead.")
@click.option("--transcript", default=None,
              help="Full-text search over transcripts (alone, or with --query/--image: hybrid, only videos "
                   "whose transcript holds every word).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=None, help="Videos to return.")
@click.option("--since", type=TimeParam(), default=None, help="Uploaded at or after (ISO 8601 or 7d, 24h…).")
@click.option("--until", type=TimeParam(), default=None, help="Uploaded before.")
@click.option("--layout", "layouts", multiple=True, help="Only this layout (repeatable): vertical, grid, …")
@click.option("--source", "--channel", "sources", multiple=True, help="Only this channel/source (repeatable).")
@click.option("--decision", "decisions", multiple=True,
              help="Only videos with this latest decision (repeatable; 'none' = no decision yet).")
@click.option("--k", "k", type=click.IntRange(1, 10_000), default=None,
              help="Frames fetched by the nearest-neighbour search (default: limit × frames_per_video).")
@click.option("--num-candidates", type=click.IntRange(1, 10_000), default=None,
              help="Elasticsearch: HNSW candidates per shard (default: elastic.num_candidates).")
@click.option("--min-score", type=click.FloatRange(-1, 1), default=None, help="Cosine similarity floor.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@click.pass_context
def recall_cmd(ctx: click.Context, query: str | None, image: str | None, transcript: str | None,
               limit: int | None, since: float | None, until: float | None, layouts: tuple[str, ...],
               sources: tuple[str, ...], decisions: tuple[str, ...], k: int | None, num_candidates: int | None,
               min_score: float | None, fmt: str) -> None:
    """Recall indexed videos: frames ranked by cosine similarity to the query, grouped into videos.

    Each video shows its best score, the timestamps of its matching frames and
    a transcript snippet. Filters (time, layout, channel, decision) apply inside
    the nearest-neighbour search, so they never empty a page of results.
    """
    app = get_app(ctx)
    rs = app.settings.recall
    limit = limit or rs.limit
    if query is not None and image is not None:
        raise ConfigError("give --query or --image, not both")
    if query is None and image is None and transcript is None:
        raise QueryError("nothing to search for: give --query TEXT, --image PATH or --transcript TEXT")
    for name, text in (("query", query), ("transcript query", transcript)):
        if text is not None:
            if not text.strip():
                raise QueryError(f"the {name} is empty")
            if len(text) > rs.max_query_chars:
                raise QueryError(f"the {name} has {len(text)} characters; at most {rs.max_query_chars} are allowed")
    if since is not None and until is not None and since >= until:
        raise QueryError("--since must be earlier than --until")
    where = HistoryFilter(since=since, until=until, layouts=layouts, sources=sources, decisions=decisions)

    if query is None and image is None:
        history = app.history(with_encoder=False)
        hits = history.search_transcripts(transcript, limit, where=where)
        videos = history.get_videos([h.video_id for h in hits])
        rows = [
            {"video_id": h.video_id, "path": videos[h.video_id].path, "score": round(h.score, 4),
             "timestamps": [], "snippet": h.snippet, "uploaded_at": videos[h.video_id].uploaded_at,
             "layout": videos[h.video_id].layout, "source": videos[h.video_id].source, "score_kind": "bm25"}
            for h in hits if h.video_id in videos
        ]
        return _render(rows, fmt, title=f"transcript: {transcript}", random=False)

    img = read_image(image) if image is not None else None  # an unreadable image fails before the model loads
    vector = (app.encoder.embed_texts([query]) if query is not None else app.encoder.embed_images([img]))[0]
    history = app.history()
    hits = history.recall(vector, limit=limit, min_score=min_score, where=where, transcript=transcript,
                          frames_per_video=rs.frames_per_video, snippet_chars=rs.snippet_chars,
                          num_candidates=num_candidates, k=k)
    rows = []
    for h in hits:
        d = h.to_dict()
        d["score"] = round(d["score"], 4)
        d["frame_scores"] = [round(s, 4) for s in d["frame_scores"]]
        d["score_kind"] = "cosine"
        d["model_id"] = app.encoder.model_id
        d["random_weights"] = app.encoder.random_weights
        rows.append(d)
    _render(rows, fmt, title=f"recall: {query or image}", random=app.encoder.random_weights)


def _render(rows: list[dict], fmt: str, *, title: str, random: bool) -> None:
    if fmt == "json":
        emit_json(rows)
        return
    if fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(["rank", "video_id", "path", "score", "timestamps", "uploaded_at", "layout", "snippet"])
        for i, r in enumerate(rows, 1):
            w.writerow([i, r["video_id"], r["path"], r["score"], " ".join(f"{t:.2f}" for t in r["timestamps"]),
                        format_time(r.get("uploaded_at")), r.get("layout") or "", r["snippet"]])
        return
    table = Table(title=title + ("  [yellow](random weights)[/]" if random else ""), title_justify="left")
    for col in ("#", "score", "video", "path", "matching frames (s)", "transcript"):
        table.add_column(col, overflow="fold")
    for i, r in enumerate(rows, 1):
        table.add_row(str(i), f"{r['score']:.3f}", r["video_id"][:12], r["path"],
                      ", ".join(f"{t:.1f}" for t in r["timestamps"][:6]), r["snippet"])
    out_console.print(table)
    if not rows:
        out_console.print("no matching videos")


COMMANDS = [recall_cmd]
