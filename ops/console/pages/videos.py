"""One video's page (frames, layout regions, matches, jobs, labels) and the label form every page posts to."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from indexer.errors import SludgeError
from indexer.thumbs import list_thumbnails
from ops.console.web import Ctx, Refused, Signed, form_with_csrf, need, safe_next, wants_json
from ops.usecases.screen import stored_matches

router = APIRouter(include_in_schema=False)


@router.get("/ui/videos/{video_id}", response_class=HTMLResponse)
def video_page(request: Request, video_id: str, c: Ctx, s: Signed):
    if len(video_id) != 64 or not all(ch in "0123456789abcdef" for ch in video_id):
        raise Refused(404, "no such video")
    hist = c.stores.history()
    sv = hist.get_video(video_id)
    if sv is None:
        raise Refused(404, f"video {video_id[:12]}… is not in the history")
    thumbs = list_thumbnails(c.troot, video_id)
    have = {n for _, n in thumbs}
    jobs = c.hooks.queue.jobs_of_video(video_id)
    decided = [j for j in jobs if j.decision]
    latest = decided[-1].decision if decided else None
    bank = c.stores.bank()
    exemplars = {}
    pairs = []
    if latest is not None:
        for pol in latest.get("policies", []):
            for m in pol.get("matches", [])[:6]:
                pairs.append({"policy": pol["policy"], **m})
    else:
        pairs = [{"policy": policy, **asdict(m)} for policy, m in stored_matches(hist, bank, video_id)]
    for p in pairs:
        if p["exemplar_id"] not in exemplars:
            exemplars[p["exemplar_id"]] = bank.get(p["exemplar_id"])
        near = min(thumbs, key=lambda t: abs(t[0] - p["ts"])) if thumbs else None
        p["frame_url"] = f"/ui/thumbs/{video_id}/{near[1]}" if near else None
    layout = getattr(sv, "layout_detail", None) or (latest or {}).get("layout")
    regions = []
    if layout and sv.width and sv.height:
        for x, y, w, h in layout.get("regions", []):
            regions.append({"left": 100 * x / sv.width, "top": 100 * y / sv.height,
                            "width": 100 * w / sv.width, "height": 100 * h / sv.height})
    scores = {p["policy"]: p.get("score") for p in (latest or {}).get("policies", [])}
    name = next((j.source.get("filename") for j in jobs if j.source.get("filename")), Path(sv.path).name)
    return c.page(request, "video.html", s, v=sv, name=name, thumbs=thumbs, have=have,
                  jobs=jobs, pairs=pairs, exemplars=exemplars, layout=layout, regions=regions,
                  labels=bank.labels(video_id=video_id), policies=c.policy_names(), scores=scores,
                  back=safe_next(request.query_params.get("back")))


@router.post("/ui/labels")
async def add_label(request: Request, c: Ctx, s: Signed):
    from search.types import Label

    form = await form_with_csrf(request, s)
    need(s, "read")
    verdict = str(form.get("verdict") or "")
    score = form.get("score")
    try:
        score_v = float(score) if score not in (None, "", "None") else None
    except ValueError:
        raise Refused(400, f"score {score!r} is not a number") from None
    video_id = str(form.get("video_id") or "")
    sv = c.stores.history().get_video(video_id) if len(video_id) == 64 else None
    if sv is None:
        raise Refused(404, "no such video in the history")
    try:
        lab = c.stores.bank().add_label(Label(
            str(form.get("policy") or ""), video_id, verdict, s.reviewer,
            subject=str(form.get("subject") or "decision")[:20], score=score_v, path=sv.path,
            note=str(form.get("note") or "")[:500]))
    except SludgeError as e:
        raise Refused(400, str(e)) from None
    if wants_json(request):
        return JSONResponse({"label": {k: v for k, v in lab.to_dict().items() if k != "path"}})
    return RedirectResponse(safe_next(str(form.get("next") or "")), status_code=303)

