"""``sludge recall``: past videos ranked by similarity to a text (or an image)."""

from __future__ import annotations

import csv
import sys

import click
from rich.table import Table

from indexer.errors import ConfigError, QueryError
from ops.app import err_console
from ops.cli.context import get_app
from ops.cli.output import TimeParam, emit_json, out_console
from ops.usecases.recall import check_text, embed_queries, recall_videos
from ops.usecases.times import format_time
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
@click.option("--engine", type=click.Choice(["store", "faiss", "faiss-ivf"]), default=None,
              help="store: the history's own search (default: recall.engine); faiss / faiss-ivf: the embeddings "
                   "exported into an exact / IVF faiss index (GPU where faiss-gpu sees one), for batch sweeps.")
@click.option("--nprobe", type=click.IntRange(1, 65536), default=None,
              help="faiss-ivf: lists visited per query (default: recall.faiss_nprobe).")
@click.option("--nlist", type=click.IntRange(1, 1 << 20), default=None,
              help="faiss-ivf: inverted lists (default: recall.faiss_nlist, 0 = about 4·sqrt(frames)).")
@click.option("--queries-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A batch: one text query per line (instead of --query), answered together; "
                   "json gives [{query, results}], csv a query column.")
@click.pass_context
def recall_cmd(ctx: click.Context, query: str | None, image: str | None, transcript: str | None,
               limit: int | None, since: float | None, until: float | None, layouts: tuple[str, ...],
               sources: tuple[str, ...], decisions: tuple[str, ...], k: int | None, num_candidates: int | None,
               min_score: float | None, fmt: str, engine: str | None, nprobe: int | None, nlist: int | None,
               queries_file: str | None) -> None:
    """Recall indexed videos: frames ranked by cosine similarity to the query, grouped into videos.

    Each video shows its best score, the timestamps of its matching frames and
    a transcript snippet. Filters (time, layout, channel, decision) apply inside
    the nearest-neighbour search, so they never empty a page of results.
    """
    app = get_app(ctx)
    rs = app.settings.recall
    limit = limit or rs.limit
    engine = engine or rs.engine
    if query is not None and image is not None:
        raise ConfigError("give --query or --image, not both")
    queries: list[str] = []
    if queries_file is not None:
        if query is not None or image is not None:
            raise ConfigError("give --queries-file or --query/--image, not both")
        with open(queries_file, encoding="utf-8") as f:
            queries = [line.strip() for line in f if line.strip()]
        if not queries:
            raise QueryError(f"{queries_file} holds no queries (one per line)")
    if query is None and image is None and transcript is None and not queries:
        raise QueryError("nothing to search for: give --query TEXT, --image PATH or --transcript TEXT")
    for name, text in [("query", query), ("transcript query", transcript)] + [("query", q) for q in queries]:
        if text is not None:
            check_text(text, rs.max_query_chars, name)
    if since is not None and until is not None and since >= until:
        raise QueryError("--since must be earlier than --until")
    where = HistoryFilter(since=since, until=until, layouts=layouts, sources=sources, decisions=decisions)

    if query is None and image is None and not queries:
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
    vectors = embed_queries(app, texts=queries or [query]) if img is None else embed_queries(app, images=[img])
    history = app.history()
    search_for = _engine(app, history, engine, where, vectors, k or limit * rs.frames_per_video,
                         nlist=nlist, nprobe=nprobe)
    batch = []
    for i, vector in enumerate(vectors):
        hits = recall_videos(app, vector, history=history, limit=limit, min_score=min_score, where=where,
                      transcript=transcript, num_candidates=num_candidates, k=k, search=search_for(i))
        rows = []
        for h in hits:
            d = h.to_dict()
            d["score"] = round(d["score"], 4)
            d["frame_scores"] = [round(s, 4) for s in d["frame_scores"]]
            d["score_kind"] = "cosine"
            d["model_id"] = app.encoder.model_id
            d["random_weights"] = app.encoder.random_weights
            d["engine"] = engine
            rows.append(d)
        batch.append(rows)
    if not queries:
        _render(batch[0], fmt, title=f"recall: {query or image}", random=app.encoder.random_weights)
    else:
        _render_batch(queries, batch, fmt, random=app.encoder.random_weights)


def _engine(app, history, engine: str, where: HistoryFilter, vectors, k: int, *, nlist: int | None,
            nprobe: int | None):
    """``i -> search function`` for ``history.recall``: None (the store's own) or faiss over the export.

    faiss answers every query's first page together (one pass over the index);
    a wider search (few distinct videos) or a transcript-narrowed one asks it again.
    """
    if engine == "store":
        return lambda i: None
    from search.faiss_engine import FaissEngine

    rs = app.settings.recall
    with err_console.status(f"exporting frame embeddings into faiss ({engine}) …"):
        fe = FaissEngine.from_history(history, where=where, kind="ivf" if engine == "faiss-ivf" else "flat",
                                      nlist=nlist or rs.faiss_nlist, nprobe=nprobe or rs.faiss_nprobe,
                                      gpu=rs.faiss_gpu)
    err_console.print(f"[dim]{fe.describe()}[/]")
    first = fe.search_many(vectors, k)

    def search_for(i: int):
        def search(vector, want: int, *, where: HistoryFilter | None = None, num_candidates=None, **kw):
            if want <= k and not kw and fe.allowed_positions(where) is None:
                return first[i][:want]
            return fe.search_frames(vector, want, where=where, **kw)
        return search

    return search_for


def _render_batch(queries: list[str], batch: list[list[dict]], fmt: str, *, random: bool) -> None:
    if fmt == "json":
        emit_json([{"query": q, "results": rows} for q, rows in zip(queries, batch)])
        return
    if fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(["query", "rank", "video_id", "path", "score", "timestamps", "uploaded_at", "layout", "snippet"])
        for q, rows in zip(queries, batch):
            for i, r in enumerate(rows, 1):
                w.writerow([q, i, r["video_id"], r["path"], r["score"], " ".join(f"{t:.2f}" for t in r["timestamps"]),
                            format_time(r.get("uploaded_at")), r.get("layout") or "", r["snippet"]])
        return
    for q, rows in zip(queries, batch):
        _render(rows, fmt, title=f"recall: {q}", random=random)


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
