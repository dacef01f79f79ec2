"""The review queues: recent decisions (with the live feed the page polls) and sweep candidates by policy."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from indexer.thumbs import list_thumbnails
from ops.console.web import Console, Ctx, Refused, Signed, fmt_time
from ops.hooks.errors import HooksError

router = APIRouter(include_in_schema=False)


@router.get("/ui/decisions", response_class=HTMLResponse)
def decisions_page(request: Request, c: Ctx, s: Signed):
    rows = _decision_rows(c, c.hooks.queue.recent_decisions(50))
    return c.page(request, "decisions.html", s, rows=rows, policies=c.policy_names())


@router.get("/ui/decisions/feed")
def decisions_feed(c: Ctx, s: Signed, after: str | None = None):
    if after is not None and not all(ch.isdigit() or ch == "-" for ch in after):
        raise Refused(400, "bad feed position")
    rows = _decision_rows(c, c.hooks.queue.recent_decisions(50, after=after))
    for r in rows:
        r["at_text"] = fmt_time(r["at"])
    return JSONResponse({"rows": rows})


@router.get("/ui/sweeps", response_class=HTMLResponse)
def sweeps_page(request: Request, c: Ctx, s: Signed):
    hist = c.stores.history()
    out = []
    for pol in c.stores.bank().list_policies():
        cands = hist.sweep_candidates(pol.name, limit=50)
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
    return c.page(request, "sweeps.html", s, sweeps=out)


def _decision_rows(c: Console, entries: list[dict]) -> list[dict]:
    rows = []
    for e in entries:
        try:
            job = c.hooks.queue.get(e["job"])
        except HooksError:
            continue
        d = job.decision or {}
        rows.append({"entry": e["entry"], "job": job.job_id, "video_id": job.video_id, "decision": d.get(
            "decision"), "reason": d.get("reason", ""), "stage": d.get("stage"),
            "policies": d.get("matched_policies", []), "at": d.get("decided_at"),
            "layout": (d.get("layout") or {}).get("layout"), "name": job.source.get("filename") or
            Path(job.source.get("path") or job.source.get("url") or "").name,
            "scores": {p["policy"]: p.get("score") for p in d.get("policies", [])}})
    return rows
