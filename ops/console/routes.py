"""The reviewer console's pages: recall, videos, the bank, decisions, sweeps, and labels.

Server-rendered (Jinja2, autoescaped) with one small script of our own for
keyboard navigation, confirm/dismiss without a page load, and the live
decision feed. Every page needs a session (sign-in with an API key holding
``read``); changing the bank needs ``admin``; every POST needs the session's
CSRF token. Pages show file names, never server paths.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from indexer.errors import QueryError, SludgeError
from indexer.thumbs import list_thumbnails, make_thumbnail, save_jpeg, thumb_name, thumbnail_file
from ops.console.sessions import COOKIE, TTL_S, Session, Sessions
from ops.hooks.errors import HooksError
from ops.usecases.bank import add_exemplars, exemplars_for
from ops.usecases.recall import embed_queries, recall_videos

HERE = Path(__file__).resolve().parent
PER_PAGE = 24
LOGIN_COOKIE = "sludge_login"


class _Redirect(Exception):
    def __init__(self, url: str) -> None:
        self.url = url


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message


def _safe_next(url: str | None) -> str:
    """Only our own pages: no scheme, no host, no protocol-relative '//'."""
    if not url or not url.startswith("/ui") or url.startswith("//") or "\\" in url:
        return "/ui/recall"
    return url


def _fmt_time(ts: float | None) -> str:
    if not ts:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(ts)))


def mount_console(api: FastAPI, app_ctx, hooks, stores, model_lock) -> None:
    """Add ``/ui`` to the API. ``stores``: the API's bank/history accessors (shared, opened once)."""
    settings = app_ctx.settings
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["t"] = _fmt_time
    templates.env.filters["basename"] = lambda p: Path(str(p)).name if p else ""
    sessions = Sessions(hooks.client, hooks.keys, hooks.api_keys)
    api.mount("/ui/static", StaticFiles(directory=str(HERE / "static")), name="console-static")
    troot = settings.thumbs_dir

    @api.exception_handler(_Redirect)
    async def redirect(_request: Request, e: _Redirect):
        return RedirectResponse(e.url, status_code=303)

    @api.exception_handler(_Refused)
    async def refused(request: Request, e: _Refused):
        if request.headers.get("accept", "").startswith("application/json"):
            return JSONResponse({"error": {"code": "refused", "message": e.message}}, status_code=e.status)
        return templates.TemplateResponse(request, "error.html", {"message": e.message, "s": None,
                                                                  "status": e.status}, status_code=e.status)

    def session(request: Request) -> Session:
        s = sessions.get(request.cookies.get(COOKIE))
        if s is None:
            raise _Redirect("/ui/login?" + urlencode({"next": request.url.path + (
                "?" + request.url.query if request.url.query else "")}))
        return s

    async def form_with_csrf(request: Request, s: Session):
        form = await request.form(max_files=1, max_fields=30)
        if not s.csrf_ok(form.get("csrf") or request.headers.get("x-csrf-token")):
            await form.close()
            raise _Refused(403, "the form's CSRF token is missing or wrong: reload the page and try again")
        return form

    def need(s: Session, scope: str) -> None:
        if not s.can(scope):
            raise _Refused(403, f"your key ({s.key_id}) lacks the '{scope}' scope needed for this")

    def page(request: Request, template: str, s: Session, **ctx: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, template, {"s": s, "nav": template.split(".")[0], **ctx})

    def thumb_url(video_id: str, ts: float, have: set[str]) -> str | None:
        name = thumb_name(ts)
        return f"/ui/thumbs/{video_id}/{name}" if name in have else None

    # -- sign-in ---------------------------------------------------------------------------

    @api.get("/ui", include_in_schema=False)
    @api.get("/ui/", include_in_schema=False)
    def ui_root():
        return RedirectResponse("/ui/recall", status_code=303)

    @api.get("/ui/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request, next: str | None = None, error: str | None = None):
        nonce = secrets.token_urlsafe(24)  # double-submit token: a login form posted from elsewhere fails
        resp = templates.TemplateResponse(request, "login.html", {"s": None, "next": _safe_next(next),
                                                                  "nonce": nonce, "error": error})
        resp.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="strict", path="/ui",
                        secure=request.url.scheme == "https", max_age=3600)
        return resp

    @api.post("/ui/login", include_in_schema=False)
    async def login(request: Request):
        form = await request.form(max_fields=5)
        nxt = _safe_next(form.get("next"))
        nonce = request.cookies.get(LOGIN_COOKIE)
        if not nonce or not secrets.compare_digest(nonce, str(form.get("nonce") or "")):
            raise _Refused(403, "the sign-in form expired or came from another site: reload it and try again")
        try:
            token, _s = sessions.create(str(form.get("api_key") or "").strip())
        except HooksError as e:
            return RedirectResponse("/ui/login?" + urlencode({"next": nxt, "error": str(e)}), status_code=303)
        resp = RedirectResponse(nxt, status_code=303)
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https", max_age=TTL_S)
        resp.delete_cookie(LOGIN_COOKIE, path="/ui")
        return resp

    @api.post("/ui/logout", include_in_schema=False)
    async def logout(request: Request):
        s = session(request)
        await form_with_csrf(request, s)
        sessions.end(request.cookies.get(COOKIE))
        resp = RedirectResponse("/ui/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    # -- thumbnails ------------------------------------------------------------------------------

    @api.get("/ui/thumbs/{video_id}/{name}", include_in_schema=False)
    def thumb(request: Request, video_id: str, name: str):
        session(request)
        p = thumbnail_file(troot, video_id, name)
        if p is None:
            raise _Refused(404, "no such thumbnail")
        return FileResponse(p, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @api.get("/ui/exemplars/{exemplar_id}/thumb", include_in_schema=False)
    def exemplar_thumb(request: Request, exemplar_id: str):
        session(request)
        if not exemplar_id.isalnum() or len(exemplar_id) > 64:
            raise _Refused(404, "no such exemplar")
        dest = troot / "exemplars" / f"{exemplar_id}.jpg"
        if not dest.is_file():
            ex = stores.bank().get(exemplar_id)
            if ex is None or ex.kind == "text":
                raise _Refused(404, "no such image exemplar")
            image = _exemplar_image(ex)
            if image is None:
                raise _Refused(404, "the exemplar's image is no longer on this server")
            save_jpeg(make_thumbnail(image), dest)
        return FileResponse(dest, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    # -- recall ----------------------------------------------------------------------------------

    def _recall_page(request: Request, s: Session, vec, query_text: str, params: dict[str, str]):
        from ops.usecases.times import parse_time
        from search.history import HistoryFilter

        pg = max(0, int(params.get("page") or 0))
        try:
            since = parse_time(params["since"]) if params.get("since") else None
            until = parse_time(params["until"]) if params.get("until") else None
            min_score = float(params["min_score"]) if params.get("min_score") else None
        except (SludgeError, ValueError) as e:
            raise _Refused(400, f"bad filter: {e}") from None
        where = HistoryFilter(since=since, until=until,
                              layouts=tuple(x for x in [params.get("layout")] if x),
                              sources=tuple(x for x in [params.get("channel")] if x),
                              decisions=tuple(x for x in [params.get("decision")] if x))
        hits = recall_videos(app_ctx, vec, history=stores.history(), limit=PER_PAGE * (pg + 1), min_score=min_score,
                             where=where)
        shown = hits[PER_PAGE * pg:]
        cards = []
        for h in shown:
            have = {n for _, n in list_thumbnails(troot, h.video_id)}
            frames = [{"ts": ts, "score": sc, "url": thumb_url(h.video_id, ts, have)}
                      for ts, sc in list(zip(h.timestamps, h.frame_scores))[:4]]
            cards.append({"hit": h, "frames": frames})
        base = {k: v for k, v in params.items() if k != "page" and v}
        return page(request, "recall.html", s, query=query_text, params=params, cards=cards, page=pg,
                    more=len(hits) == PER_PAGE * (pg + 1),
                    prev_url=f"/ui/recall?{urlencode({**base, 'page': pg - 1})}" if pg > 0 else None,
                    next_url=f"/ui/recall?{urlencode({**base, 'page': pg + 1})}",
                    policies=[p.name for p in stores.bank().list_policies()],
                    random_weights=bool(getattr(app_ctx.encoder, "random_weights", False)))

    @api.get("/ui/recall", response_class=HTMLResponse, include_in_schema=False)
    def recall_page(request: Request):
        s = session(request)
        params = {k: request.query_params.get(k, "") for k in ("q", "since", "until", "layout", "channel",
                                                               "decision", "min_score", "page")}
        q = params["q"].strip()
        if not q:
            return page(request, "recall.html", s, query="", params=params, cards=None, page=0, more=False,
                        prev_url=None, next_url=None, policies=[p.name for p in stores.bank().list_policies()],
                        random_weights=False)
        try:
            vec = embed_queries(app_ctx, texts=[q], lock=model_lock)[0]
        except QueryError as e:
            raise _Refused(400, str(e)) from None
        return _recall_page(request, s, vec, q, params)

    @api.post("/ui/recall", response_class=HTMLResponse, include_in_schema=False)
    async def recall_by_image(request: Request):
        from starlette.datastructures import UploadFile

        s = session(request)
        form = await form_with_csrf(request, s)
        try:
            up = form.get("image")
            if not isinstance(up, UploadFile):
                raise _Refused(400, "choose an image to search with")
            image = _read_upload_image(await up.read(), up.filename or "image")
            params = {k: str(form.get(k) or "") for k in ("since", "until", "layout", "channel", "decision",
                                                          "min_score")}
            vec = embed_queries(app_ctx, images=[image], lock=model_lock)[0]
            return _recall_page(request, s, vec, f"image: {up.filename}", {**params, "q": "", "page": ""})
        finally:
            await form.close()

    # -- one video -----------------------------------------------------------------------------------

    @api.get("/ui/videos/{video_id}", response_class=HTMLResponse, include_in_schema=False)
    def video_page(request: Request, video_id: str):
        s = session(request)
        if len(video_id) != 64 or not all(c in "0123456789abcdef" for c in video_id):
            raise _Refused(404, "no such video")
        hist = stores.history()
        sv = hist.get_video(video_id)
        if sv is None:
            raise _Refused(404, f"video {video_id[:12]}… is not in the history")
        thumbs = list_thumbnails(troot, video_id)
        have = {n for _, n in thumbs}
        jobs = hooks.queue.jobs_of_video(video_id)
        decided = [j for j in jobs if j.decision]
        latest = decided[-1].decision if decided else None
        bank = stores.bank()
        exemplars = {}
        pairs = []
        if latest is not None:
            for pol in latest.get("policies", []):
                for m in pol.get("matches", [])[:6]:
                    pairs.append({"policy": pol["policy"], **m})
        else:
            pairs = _live_matches(hist, bank, video_id)
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
        policies = [p.name for p in bank.list_policies()]
        scores = {p["policy"]: p.get("score") for p in (latest or {}).get("policies", [])}
        name = next((j.source.get("filename") for j in jobs if j.source.get("filename")), Path(sv.path).name)
        return page(request, "video.html", s, v=sv, name=name, thumbs=thumbs, have=have,
                    jobs=jobs, pairs=pairs, exemplars=exemplars, layout=layout, regions=regions,
                    labels=bank.labels(video_id=video_id), policies=policies, scores=scores,
                    back=_safe_next(request.query_params.get("back")))

    # -- labels ----------------------------------------------------------------------------------------

    @api.post("/ui/labels", include_in_schema=False)
    async def add_label(request: Request):
        from search.types import Label

        s = session(request)
        form = await form_with_csrf(request, s)
        need(s, "read")
        verdict = str(form.get("verdict") or "")
        score = form.get("score")
        try:
            score_v = float(score) if score not in (None, "", "None") else None
        except ValueError:
            raise _Refused(400, f"score {score!r} is not a number") from None
        video_id = str(form.get("video_id") or "")
        hist = stores.history()
        sv = hist.get_video(video_id) if len(video_id) == 64 else None
        if sv is None:
            raise _Refused(404, "no such video in the history")
        try:
            lab = stores.bank().add_label(Label(
                str(form.get("policy") or ""), video_id, verdict, s.reviewer,
                subject=str(form.get("subject") or "decision")[:20], score=score_v, path=sv.path,
                note=str(form.get("note") or "")[:500]))
        except SludgeError as e:
            raise _Refused(400, str(e)) from None
        if request.headers.get("accept", "").startswith("application/json"):
            return JSONResponse({"label": {k: v for k, v in lab.to_dict().items() if k != "path"}})
        return RedirectResponse(_safe_next(str(form.get("next") or "")), status_code=303)

    # -- the bank -------------------------------------------------------------------------------------

    @api.get("/ui/bank", response_class=HTMLResponse, include_in_schema=False)
    def bank_page(request: Request):
        s = session(request)
        bank = stores.bank()
        pols = bank.list_policies()
        by_policy = {p.name: bank.list(policy=p.name) for p in pols}
        return page(request, "bank.html", s, policies=pols, by_policy=by_policy, audit=bank.audit(limit=60),
                    default_threshold=settings.bank.default_threshold)

    @api.post("/ui/bank/exemplars", include_in_schema=False)
    async def bank_add(request: Request):
        from starlette.datastructures import UploadFile

        from search.types import check_policy_name

        s = session(request)
        form = await form_with_csrf(request, s)
        try:
            need(s, "admin")
            policy = str(form.get("policy") or "").strip()
            text = str(form.get("text") or "").strip()
            up = form.get("image")
            note = str(form.get("note") or "")[:500]
            try:
                check_policy_name(policy)
                threshold = float(form.get("threshold") or settings.bank.default_threshold)
            except (SludgeError, ValueError) as e:
                raise _Refused(400, str(e)) from None
            bank = stores.bank(with_encoder=True)
            actor = s.reviewer
            try:
                if isinstance(up, UploadFile) and up.filename:
                    data = await up.read()
                    _read_upload_image(data, up.filename)  # refuse non-images before keeping anything
                    keep = settings.data_dir / "exemplars" / (hashlib.sha256(data).hexdigest()
                                                              + Path(up.filename).suffix.lower()[:6])
                    keep.parent.mkdir(parents=True, exist_ok=True)
                    keep.write_bytes(data)
                    items = exemplars_for(app_ctx, policy, image=keep, note=note, added_by=actor, lock=model_lock)
                elif text:
                    items = exemplars_for(app_ctx, policy, text=text, note=note, added_by=actor, lock=model_lock)
                else:
                    raise _Refused(400, "give a text or an image")
                add_exemplars(app_ctx, bank, items, threshold=threshold, actor=actor)
            except SludgeError as e:
                raise _Refused(400, str(e)) from None
        finally:
            await form.close()
        return RedirectResponse("/ui/bank", status_code=303)

    @api.post("/ui/bank/exemplars/{exemplar_id}/{action}", include_in_schema=False)
    async def bank_change(request: Request, exemplar_id: str, action: str):
        s = session(request)
        await form_with_csrf(request, s)
        need(s, "admin")
        bank = stores.bank()
        try:
            ex = bank.resolve(exemplar_id)
            if action == "remove":
                bank.remove(ex.exemplar_id, actor=s.reviewer)
            elif action in ("enable", "disable"):
                bank.set_enabled(ex.exemplar_id, action == "enable", actor=s.reviewer)
            else:
                raise _Refused(404, f"unknown action {action!r}")
        except SludgeError as e:
            raise _Refused(400, str(e)) from None
        return RedirectResponse("/ui/bank", status_code=303)

    @api.post("/ui/bank/policies/{name}", include_in_schema=False)
    async def bank_policy(request: Request, name: str):
        from dataclasses import replace

        from search.types import Rule

        s = session(request)
        form = await form_with_csrf(request, s)
        need(s, "admin")
        bank = stores.bank()
        try:
            pol = bank.require_policy(name)
            new = replace(pol, threshold=float(form.get("threshold")),
                          rule=Rule.parse(str(form.get("rule") or pol.rule)))
            bank.put_policy(new, actor=s.reviewer)
        except (SludgeError, ValueError, TypeError) as e:
            raise _Refused(400, f"cannot change policy {name}: {e}") from None
        return RedirectResponse("/ui/bank", status_code=303)

    # -- decisions and sweeps ----------------------------------------------------------------------------

    def _decision_rows(entries: list[dict]) -> list[dict]:
        rows = []
        for e in entries:
            try:
                job = hooks.queue.get(e["job"])
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

    @api.get("/ui/decisions", response_class=HTMLResponse, include_in_schema=False)
    def decisions_page(request: Request):
        s = session(request)
        rows = _decision_rows(hooks.queue.recent_decisions(50))
        return page(request, "decisions.html", s, rows=rows,
                    policies=[p.name for p in stores.bank().list_policies()])

    @api.get("/ui/decisions/feed", include_in_schema=False)
    def decisions_feed(request: Request, after: str | None = None):
        session(request)
        if after is not None and not all(c.isdigit() or c == "-" for c in after):
            raise _Refused(400, "bad feed position")
        rows = _decision_rows(hooks.queue.recent_decisions(50, after=after))
        for r in rows:
            r["at_text"] = _fmt_time(r["at"])
        return JSONResponse({"rows": rows})

    @api.get("/ui/sweeps", response_class=HTMLResponse, include_in_schema=False)
    def sweeps_page(request: Request):
        s = session(request)
        hist = stores.history()
        out = []
        for pol in stores.bank().list_policies():
            cands = hist.sweep_candidates(pol.name, limit=50)
            runs = {}
            for c in cands:
                if c.run_id and c.run_id not in runs:
                    runs[c.run_id] = hist.sweep_state(c.run_id) or {}
            latest = {lab.video_id: lab.verdict for lab in stores.bank().latest_labels(pol.name)}
            thumbs = {}
            for c in cands:
                have = {n for _, n in list_thumbnails(troot, c.video_id)}
                thumbs[c.video_id] = [u for u in (thumb_url(c.video_id, t, have) for t in c.timestamps[:3]) if u]
            if cands:
                out.append({"policy": pol.name, "candidates": cands, "runs": runs, "labels": latest,
                            "thumbs": thumbs})
        return page(request, "sweeps.html", s, sweeps=out)

    def _live_matches(hist, bank, video_id: str) -> list[dict]:
        """Matches of a video indexed outside the hooks service: its stored frame vectors against the bank."""
        export = getattr(hist, "export_frames", None)
        if export is None:
            return []
        from search.history import HistoryFilter

        pairs = []
        for pg in export(HistoryFilter(video_ids=(video_id,))):
            if not len(pg.frame_ids):
                continue
            for ts, ms in zip(pg.ts, bank.knn(pg.vectors, 3)):
                pairs += [{"policy": m.policy, "ts": float(ts), "exemplar_id": m.exemplar_id, "kind": m.kind,
                           "source": m.source, "score": m.score, "signal": m.signal} for m in ms[:1]]
        return sorted(pairs, key=lambda p: -p["score"])[:12]


def _read_upload_image(data: bytes, name: str):
    from search.exemplars import decode_image

    try:
        return decode_image(data, name)
    except SludgeError as e:
        raise _Refused(400, str(e)) from None


def _exemplar_image(ex):
    """The pixels of an image or frame exemplar, when its source is still on this server."""
    from indexer.errors import MediaError
    from search.exemplars import read_image

    src = ex.source
    if ex.kind == "image":
        try:
            return read_image(src)
        except MediaError:
            return None
    if ex.kind == "frame" and "@" in src:
        path, _, ts = src.rpartition("@")
        try:
            from indexer.video import VideoReader

            with VideoReader(path) as r:
                frames = r.frames_at([float(ts.rstrip("s"))])
            return frames[0].image if frames else None
        except (SludgeError, ValueError, OSError):
            return None
    return None
