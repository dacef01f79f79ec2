"""One video's page (frames, layout regions, matches, jobs, labels) and the label form every page posts to."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from indexer.decision import DECISIVE
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
    pairs.sort(key=lambda p: -p["score"])
    thresholds = {p.name: p.threshold for p in bank.list_policies()}
    for p in pairs:  # pass/fail beside every match: a non-match must not look like the hit
        p["threshold"] = thresholds.get(p["policy"])
        p["passes"] = p.get("signal") in DECISIVE or (p["threshold"] is not None and p["score"] >= p["threshold"])
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
    # labels go under the policy that flagged the video; none flagged it: the reviewer chooses
    flagged_by = next(iter((latest or {}).get("matched_policies") or []), None)
    # the summary's strongest evidence: the best passing match, of the flagging policy when there is one
    passing = [p for p in pairs if p["passes"] and (flagged_by is None or p["policy"] == flagged_by)]
    evidence = max(passing, key=lambda p: p["score"]) if passing else None
    name = c.display_name(video_id, sv.path, jobs)
    return c.page(request, "video.html", s, v=sv, name=name, thumbs=thumbs, have=have,
                  jobs=jobs, pairs=pairs, exemplars=exemplars, layout=layout, regions=regions,
                  labels=bank.labels(video_id=video_id), policies=c.policy_names(), scores=scores, flagged_by=flagged_by,
                  evidence=evidence, decision=(latest or {}).get("decision") or sv.decision,
                  reason=(latest or {}).get("reason"), playable=Path(sv.path).is_file(),
                  back=safe_next(request.query_params.get("back")))


@router.get("/ui/videos/{video_id}/media")
def video_media(video_id: str, c: Ctx, s: Signed):
    """The video itself, for the page's player (sound included: mismatched audio is part of sludge)."""
    import mimetypes

    from fastapi.responses import FileResponse

    sv = c.stores.history().get_video(video_id) if len(video_id) == 64 else None
    if sv is None:
        raise Refused(404, "no such video in the history")
    if not Path(sv.path).is_file():
        raise Refused(404, "the video file is no longer on this server (only its frames and metadata are kept)")
    kind = mimetypes.guess_type(sv.path)[0] or "video/mp4"
    return FileResponse(sv.path, media_type=kind, headers={"Cache-Control": "private, max-age=600"})


@router.post("/ui/labels")
async def add_label(request: Request, c: Ctx, s: Signed):
    from search.types import Label

    form = await form_with_csrf(request, s)
    need(s, "read")
    verdict = str(form.get("verdict") or "")
    if not str(form.get("policy") or "").strip():
        raise Refused(400, "choose the policy this label is for: the video was not flagged under one")
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

