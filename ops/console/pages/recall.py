"""The Recall page: text or image search over the history, with the same filters as ``sludge recall``."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from indexer.errors import QueryError, SludgeError
from indexer.thumbs import list_thumbnails
from ops.console.sessions import Session
from ops.console.web import (
    PER_PAGE,
    Console,
    Ctx,
    Refused,
    Signed,
    form_with_csrf,
    read_upload_image,
)
from ops.usecases.recall import embed_queries, recall_videos

router = APIRouter(include_in_schema=False)

_FILTERS = ("since", "until", "layout", "channel", "decision", "min_score")


@router.get("/ui/recall", response_class=HTMLResponse)
def recall_page(request: Request, c: Ctx, s: Signed):
    params = {k: request.query_params.get(k, "") for k in ("q", *_FILTERS, "page")}
    q = params["q"].strip()
    if not q:
        return c.page(request, "recall.html", s, query="", params=params, cards=None, page=0, more=False,
                      prev_url=None, next_url=None, policies=c.policy_names(), random_weights=False)
    try:
        vec = embed_queries(c.app_ctx, texts=[q], lock=c.model_lock)[0]
    except QueryError as e:
        raise Refused(400, str(e)) from None
    return _results(request, c, s, vec, q, params)


@router.post("/ui/recall", response_class=HTMLResponse)
async def recall_by_image(request: Request, c: Ctx, s: Signed):
    from starlette.datastructures import UploadFile

    form = await form_with_csrf(request, s)
    try:
        up = form.get("image")
        if not isinstance(up, UploadFile):
            raise Refused(400, "choose an image to search with")
        image = read_upload_image(await up.read(), up.filename or "image")
        params = {k: str(form.get(k) or "") for k in _FILTERS}
        vec = embed_queries(c.app_ctx, images=[image], lock=c.model_lock)[0]
        return _results(request, c, s, vec, f"image: {up.filename}", {**params, "q": "", "page": ""})
    finally:
        await form.close()


def _results(request: Request, c: Console, s: Session, vec, query_text: str, params: dict[str, str]):
    from ops.usecases.times import parse_time
    from search.history import HistoryFilter

    pg = max(0, int(params.get("page") or 0))
    try:
        since = parse_time(params["since"]) if params.get("since") else None
        until = parse_time(params["until"]) if params.get("until") else None
        min_score = float(params["min_score"]) if params.get("min_score") else None
    except (SludgeError, ValueError) as e:
        raise Refused(400, f"bad filter: {e}") from None
    where = HistoryFilter(since=since, until=until,
                          layouts=tuple(x for x in [params.get("layout")] if x),
                          sources=tuple(x for x in [params.get("channel")] if x),
                          decisions=tuple(x for x in [params.get("decision")] if x))
    hits = recall_videos(c.app_ctx, vec, history=c.stores.history(), limit=PER_PAGE * (pg + 1),
                         min_score=min_score, where=where)
    cards = []
    for h in hits[PER_PAGE * pg:]:
        have = {n for _, n in list_thumbnails(c.troot, h.video_id)}
        frames = [{"ts": ts, "score": sc, "url": c.thumb_url(h.video_id, ts, have)}
                  for ts, sc in list(zip(h.timestamps, h.frame_scores))[:4]]
        cards.append({"hit": h, "frames": frames})
    base = {k: v for k, v in params.items() if k != "page" and v}
    return c.page(request, "recall.html", s, query=query_text, params=params, cards=cards, page=pg,
                  more=len(hits) == PER_PAGE * (pg + 1),
                  prev_url=f"/ui/recall?{urlencode({**base, 'page': pg - 1})}" if pg > 0 else None,
                  next_url=f"/ui/recall?{urlencode({**base, 'page': pg + 1})}",
                  policies=c.policy_names(),
                  random_weights=bool(getattr(c.app_ctx.encoder, "random_weights", False)))
