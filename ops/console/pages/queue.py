"""The review queues: recent decisions (with the live feed the page polls) and sweep candidates by policy."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from indexer.thumbs import list_thumbnails
from ops.console.web import Console, Ctx, Refused, Signed, fmt_time, page_number

router = APIRouter(include_in_schema=False)


PAGE = 50


def _feed_position(value: str | None) -> str | None:
    if value is not None and (not value or not all(ch.isdigit() or ch == "-" for ch in value)):
        raise Refused(400, "that is not a position in the decision feed: start again from the newest")
    return value


@router.get("/ui/decisions", response_class=HTMLResponse)
def decisions_page(request: Request, c: Ctx, s: Signed, before: str | None = None):
    """The newest decisions (live, the script adds new ones on top), or an older page (``before``)."""
    entries = c.hooks.queue.recent_decisions(PAGE, before=_feed_position(before))
    rows = _decision_rows(c, entries)
    older = f"/ui/decisions?before={entries[-1]['entry']}" if len(entries) == PAGE else None
    return c.page(request, "decisions.html", s, rows=rows, policies=c.policy_names(), live=before is None,
                  older_url=older)


@router.get("/ui/decisions/feed")
def decisions_feed(c: Ctx, s: Signed, after: str | None = None):
    rows = _decision_rows(c, c.hooks.queue.recent_decisions(PAGE, after=_feed_position(after)))
    for r in rows:
        r["at_text"] = fmt_time(r["at"])
    return JSONResponse({"rows": rows})


@router.get("/ui/sweeps", response_class=HTMLResponse)
def sweeps_page(request: Request, c: Ctx, s: Signed, page: str | None = None):
    """Each policy's sweep candidates, best first, ``PAGE`` at a time."""
    try:
        pg = page_number(page)
    except ValueError as e:
        raise Refused(400, str(e)) from None
    hist = c.stores.history()
    out = []
    more = False
    for pol in c.stores.bank().list_policies():
        cands = hist.sweep_candidates(pol.name, limit=PAGE * (pg + 1) + 1)
        more = more or len(cands) > PAGE * (pg + 1)
        cands = cands[PAGE * pg: PAGE * (pg + 1)]
        runs = {}
        for cand in cands:
            if cand.run_id and cand.run_id not in runs:
                runs[cand.run_id] = hist.sweep_state(cand.run_id) or {}
        latest = {lab.video_id: lab.verdict for lab in c.stores.bank().latest_labels(pol.name)}
        thumbs = {}
        for cand in cands:
            have = {n for _, n in list_thumbnails(c.troot, cand.video_id)}
            thumbs[cand.video_id] = [u for u in (c.thumb_url(cand.video_id, t, have) for t in cand.timestamps[:3])
                                     if u]
        if cands:
            out.append({"policy": pol.name, "candidates": cands, "runs": runs, "labels": latest, "thumbs": thumbs})
    return c.page(request, "sweeps.html", s, sweeps=out, page=pg,
                  prev_url=f"/ui/sweeps?page={pg - 1}" if pg > 0 else None,
                  next_url=f"/ui/sweeps?page={pg + 1}" if more else None)


def _decision_rows(c: Console, entries: list[dict]) -> list[dict]:
    jobs = c.hooks.queue.get_many([e["job"] for e in entries])
    rows = []
    for e in entries:
        job = jobs.get(e["job"])
        if job is None:  # expired meanwhile
            continue
        d = job.decision or {}
        thumbs = list_thumbnails(c.troot, job.video_id) if job.video_id else []
        rows.append({
            "thumb": f"/ui/thumbs/{job.video_id}/{thumbs[0][1]}" if thumbs else None,
            "entry": e["entry"], "job": job.job_id, "video_id": job.video_id, "decision": d.get("decision"),
            "reason": d.get("reason", ""), "stage": d.get("stage"), "policies": d.get("matched_policies", []),
            "at": d.get("decided_at"), "layout": (d.get("layout") or {}).get("layout"),
            "name": job.source.get("filename") or Path(job.source.get("path") or job.source.get("url") or "").name,
            "scores": {p["policy"]: p.get("score") for p in d.get("policies", [])}})
    return rows
