"""``sludge sweep``: sweep a policy over every past upload and record its candidates; confirm them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from indexer.decision import Decision, FrameMatch, PolicyVerdict
from indexer.errors import SludgeError
from ops.app import err_console
from ops.cli.context import get_app
from ops.cli.output import TimeParam, emit_json, out_console
from ops.usecases.recall import check_text, embed_queries
from ops.usecases.times import format_time
from search.exemplars import read_image
from search.history import FrameHistory, HistoryFilter, SweepCandidate
from search.sweeps import run_sweep
from search.types import StoredVideo, check_policy_name


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
        check_text(query, app.settings.recall.max_query_chars)
    img = read_image(image) if image is not None else None
    vector = (embed_queries(app, texts=[query]) if img is None else embed_queries(app, images=[img]))[0]
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
    announced = _announce(app, history, policy)
    if as_json:
        emit_json({**result.to_dict(), "webhooks_queued": announced})
        return
    if announced:
        out_console.print(f"{announced} sweep.candidate webhooks queued for the workers to send")
    out_console.print(
        f"sweep {policy} ({'resumed' if result.resumed else 'from the start'}): {result.frames_matched} frames "
        f"matched in {result.pages} pages, {result.candidates_seen} videos, {result.candidates_new} new "
        f"candidates, {result.seconds:.1f} s")


def _announce(app, history, policy: str) -> int:
    """sweep.candidate webhooks (idempotent per policy and video) when the hooks service is configured."""
    if app.settings.redis_url is None:
        return 0
    from ops.hooks.service import announce_candidates

    return announce_candidates(app.settings, history.sweep_candidates(policy))


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


@sweep_group.command("confirm")
@click.option("--policy", required=True, help="Policy whose recorded sweep candidates are confirmed.")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=None,
              help="Confirm only the N best candidates (default: all).")
@click.option("--threshold", type=click.FloatRange(-1, 1), default=None,
              help="Cosine the sweep score is measured against (default: the policy's bank threshold, else the "
                   "sweep's --min-score).")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=16, show_default=True,
              help="Candidates decided (and recorded) per cascade batch; stage-two videos of a batch share the "
                   "model's batches.")
@click.option("--undecided", is_flag=True,
              help="Skip candidates whose video already has a decision (set by hand, by a worker or by an "
                   "earlier run); without it every candidate is decided again and earlier decisions are replaced.")
@click.option("--json", "as_json", is_flag=True, help="Print the decisions and a summary as one JSON object.")
@click.pass_context
def sweep_confirm(ctx: click.Context, policy: str, limit: int | None, threshold: float | None, batch_size: int,
                  undecided: bool, as_json: bool) -> None:
    """Decide a policy's sweep candidates with the cascade and record each decision.

    Stage one reads the candidate's sweep score against the threshold (margin
    outside classifier.band_low..band_high decides), its stored layout and
    transcript; the rest go to the confirm model (Visual-Qwen) in batches.
    Each decision (flagged, cleared or review) is recorded on the video, so
    `sludge recall --decision flagged` finds it. A candidate whose file is gone
    or unreadable becomes `review` with the reason; the batch goes on.
    """
    from classifier.cascade import CascadeInput

    check_policy_name(policy)
    app = get_app(ctx)
    t0 = time.perf_counter()
    history = app.history(with_encoder=False)
    cands = history.sweep_candidates(policy, limit=None if undecided else limit)
    skipped = 0
    if undecided:  # the limit counts the candidates still to decide
        known: dict[str, StoredVideo] = {}
        for start in range(0, len(cands), 1000):
            known.update(history.get_videos([c.video_id for c in cands[start : start + 1000]]))
        todo = [c for c in cands if c.video_id not in known or known[c.video_id].decision is None]
        skipped = len(cands) - len(todo)
        cands = todo[:limit] if limit else todo
    if not cands:
        if as_json:
            emit_json({"policy": policy, "summary": summarize([], time.perf_counter() - t0), "decisions": [],
                       "skipped_decided": skipped})
        elif skipped:
            out_console.print(f"all {skipped} sweep candidates of {policy} already have a decision "
                              "(drop --undecided to decide them again)")
        else:
            out_console.print(f"no sweep candidates for {policy}: run `sludge sweep --policy {policy} --query …` "
                              "first")
        return
    thresholds = _Thresholds(app, history, policy, threshold)
    rows: list[dict[str, Any]] = []
    with err_console.status(f"confirming {len(cands)} candidates of {policy} …") as status:
        for start in range(0, len(cands), batch_size):
            chunk = cands[start : start + batch_size]
            status.update(f"confirming candidates {start + 1}-{start + len(chunk)} of {len(cands)} ({policy}) …")
            videos = history.get_videos([c.video_id for c in chunk])
            decided: dict[int, tuple[Decision, dict[str, Any]]] = {}
            items: list[tuple[int, CascadeInput, dict[str, Any]]] = []
            for i, c in enumerate(chunk):
                v = videos.get(c.video_id)
                thr, source = thresholds.of(c)
                meta = {"video_id": c.video_id, "score": round(c.score, 4), "threshold": thr,
                        "threshold_from": source}
                if v is None:
                    decided[i] = (_not_decided(c.path, f"video {c.video_id[:12]} is no longer in the frame history"),
                                  {**meta, "path": c.path, "unreadable": True, "in_history": False})
                    continue
                path = v.path or c.path
                meta["path"] = path
                if not Path(path).is_file():
                    why = "is gone" if not Path(path).exists() else "is not a regular file"
                    decided[i] = (_not_decided(path, f"video {c.video_id[:12]}: its file {path} {why}"),
                                  {**meta, "unreadable": True})
                    continue
                items.append((i, CascadeInput(path, [candidate_verdict(c, thr)], layout=stored_layout(v.layout),
                                              transcript=v.transcript or ""), meta))
            if items:
                for (i, _, meta), d in zip(items, app.cascade.decide_many([it for _, it, _ in items])):
                    # stage two ran on every readable video; a review without votes could not be read
                    decided[i] = (d, {**meta, "unreadable": d.verdict == "review" and d.confirm is None})
            for i in range(len(chunk)):
                d, meta = decided[i]
                rows.append(_record(history, d, meta, policy))
    history.refresh()
    summary = summarize(rows, time.perf_counter() - t0)
    if as_json:
        emit_json({"policy": policy, "summary": summary, "decisions": rows, "skipped_decided": skipped})
        return
    table = Table(title=f"sweep confirm: {policy}", title_justify="left")
    for col in ("#", "video", "path", "score", "decision", "stage", "reason", "model calls"):
        table.add_column(col, overflow="fold")
    styles = {"flagged": "bold red", "cleared": "green", "review": "bold yellow"}
    for n, r in enumerate(rows, 1):
        decision = f"[{styles[r['decision']]}]{r['decision']}[/]"
        if not r["recorded"]:
            decision += " [red]not recorded[/]"
        table.add_row(str(n), r["video_id"][:12], r["path"], f"{r['score']:.3f}", decision, str(r["stage"]),
                      r["reason"], str(r["cost"].get("model_calls", 0)))
    out_console.print(table)
    s = summary
    out_console.print(
        f"{s['candidates']} candidates: flagged {s['flagged']}, cleared {s['cleared']}, review {s['review']} "
        f"({s['unreadable']} unreadable); stage 1 decided {s['stage1']}, stage 2 {s['stage2']}; "
        f"{s['model_calls']} model calls; {s['seconds']:.1f} s", soft_wrap=True)
    if skipped:
        out_console.print(f"{skipped} candidates skipped: their videos already have a decision (--undecided)")


class _Thresholds:
    """The cosine a candidate's sweep score is measured against, and where it came from."""

    def __init__(self, app: Any, history: FrameHistory, policy: str, given: float | None) -> None:
        self.given, self.history = given, history
        self.bank: float | None = None
        self._runs: dict[str, float | None] = {}
        if given is None:
            pol = {p.name: p for p in app.bank(with_encoder=False).list_policies()}.get(policy)
            self.bank = pol.threshold if pol is not None else None
        self.default = app.settings.bank.default_threshold

    def of(self, c: SweepCandidate) -> tuple[float, str]:
        if self.given is not None:
            return self.given, "option"
        if self.bank is not None:
            return self.bank, "bank"
        if c.run_id not in self._runs:
            state = self.history.sweep_state(c.run_id) if c.run_id else None
            self._runs[c.run_id] = (state or {}).get("min_score")
        run_min = self._runs[c.run_id]
        if run_min is not None:
            return float(run_min), "sweep"
        return self.default, "default"


def candidate_verdict(c: SweepCandidate, threshold: float) -> PolicyVerdict:
    """A sweep candidate as stage-one bank evidence (a policy verdict, as screening gives the cascade).

    The sweep kept the frames that reached its --min-score, so the verdict is the
    best-frame rule on the candidate's score; its frames are embedding matches
    against the sweep's query (never PDQ).
    """
    over = sum(1 for s in c.frame_scores if s >= threshold)
    return PolicyVerdict(c.policy, "candidate" if c.score >= threshold else "clear", c.score, threshold, "best",
                         over, len(c.frame_scores),
                         [FrameMatch(t, f"sweep:{c.run_id}", "sweep", c.query, s, "embedding")
                          for t, s in zip(c.timestamps[:5], c.frame_scores[:5])])


def stored_layout(layout: str | None) -> dict[str, Any] | None:
    """The stored layout label as the cascade reads it (``multi_feed``)."""
    if not layout:
        return None
    from indexer.layout import MULTI_FEED

    return {"layout": layout, "multi_feed": layout in MULTI_FEED}


def _not_decided(path: str, reason: str) -> Decision:
    return Decision("review", reason, 1, cost={"model_calls": 0, "seconds": {"stage1": 0.0, "stage2": 0.0}}, path=path)


def _record(history: FrameHistory, d: Decision, meta: dict[str, Any], policy: str) -> dict[str, Any]:
    decision = d.decision
    recorded, error = False, None
    if meta.get("in_history", True):
        try:
            history.set_decision(meta["video_id"], decision)
            recorded = True
        except SludgeError as e:  # removed meanwhile: report it, go on with the batch
            error = str(e)
    meta = {k: v for k, v in meta.items() if k != "in_history"}
    return {**meta, "policy": policy, "decision": decision, "verdict": d.verdict, "stage": d.stage,
            "reason": d.reason, "cost": d.cost, "confirm": d.confirm, "evidence": d.evidence,
            "recorded": recorded, "error": error}


def summarize(rows: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    def count(key: str, value: Any) -> int:
        return sum(1 for r in rows if r[key] == value)

    return {"candidates": len(rows), "flagged": count("decision", "flagged"), "cleared": count("decision", "cleared"),
            "review": count("decision", "review"), "unreadable": count("unreadable", True),
            "stage1": count("stage", 1), "stage2": count("stage", 2),
            "model_calls": sum(r["cost"].get("model_calls", 0) for r in rows),
            "recorded": count("recorded", True), "seconds": round(seconds, 3)}


COMMANDS = [sweep_group]
