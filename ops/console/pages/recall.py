"""The Recall page: text or image search over the history, with the same filters as ``sludge recall``."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from indexer.errors import QueryError, SludgeError
from indexer.thumbs import list_thumbnails
from ops.console.sessions import Session
from ops.console.web import (
    PER_PAGE,
    Console,
    Ctx,
    Signed,
    form_with_csrf,
    page_number,
    read_upload_image,
)
from ops.usecases.recall import embed_queries, frame_vector, recall_videos

router = APIRouter(include_in_schema=False)

_FILTERS = ("since", "until", "layout", "channel", "decision", "min_score")
_IMAGE_ID = re.compile(r"^[0-9a-f]{64}$")
_FRAME = re.compile(r"^([0-9a-f]{64}):([0-9]+(?:\.[0-9]+)?)$")


@router.get("/ui/recall", response_class=HTMLResponse)
def recall_page(request: Request, c: Ctx, s: Signed):
    """A text query (``q``), an uploaded image kept by its hash (``image``) or a stored frame (``like`` =
    video:seconds), with the filters and pages; text wins when the form has both."""
    params = {k: request.query_params.get(k, "") for k in ("q", "image", "like", *_FILTERS, "page")}
    q = params["q"].strip()
    try:
        if q:
            params["image"] = params["like"] = ""
            vec, shown = embed_queries(c.app_ctx, texts=[q], lock=c.model_lock)[0], q
        elif params["like"]:
            m = _FRAME.match(params["like"])
            if m is None:
                raise QueryError("that frame reference is not one this page made; open the video and use its "
                                 "frames' “similar” links")
            ts, vec = frame_vector(c.stores.history(), m.group(1), float(m.group(2)))
            shown = f"frames like video {m.group(1)[:12]} at {ts:.1f} s"
        elif params["image"]:
            vec, shown = _kept_image_vector(c, params["image"]), "the uploaded image"
        else:
            return _form(request, c, s, params)
    except QueryError as e:
        return _form(request, c, s, params, error=str(e))
    return _results(request, c, s, vec, shown, params)


def _query_dir(c: Console) -> Path:
    return c.settings.data_dir / "queries"


def _kept_image_vector(c: Console, image_id: str):
    from search.exemplars import read_image

    p = _query_dir(c) / f"{image_id}.img"
    if not _IMAGE_ID.match(image_id) or not p.is_file():
        raise QueryError("that uploaded image is no longer kept here: upload it again")
    return embed_queries(c.app_ctx, images=[read_image(p)], lock=c.model_lock)[0]


@router.post("/ui/recall", response_class=HTMLResponse)
async def recall_by_image(request: Request, c: Ctx, s: Signed):
    from starlette.datastructures import UploadFile

    form = await form_with_csrf(request, s)
    try:
        up = form.get("image")
        if not isinstance(up, UploadFile) or not up.filename:
            return _form(request, c, s, {}, error="choose an image to search with")
        data = await up.read()
        read_upload_image(data, up.filename)  # refuse what is not an image before keeping it
        params = {k: str(form.get(k) or "") for k in _FILTERS}
    finally:
        await form.close()
    # Kept by its hash so that the results page is an ordinary GET: filters and pages work on it as on text.
    image_id = hashlib.sha256(data).hexdigest()
    keep = _query_dir(c) / f"{image_id}.img"
    keep.parent.mkdir(parents=True, exist_ok=True)
    if not keep.is_file():
        keep.write_bytes(data)
    query = urlencode({"image": image_id, **{k: v for k, v in params.items() if v}})
    return RedirectResponse(f"/ui/recall?{query}", status_code=303)


def _form(request: Request, c: Console, s: Session, params: dict[str, str], *, error: str | None = None):
    """The page without results: empty, or with what was wrong, the query and filters kept in the form."""
    return c.page(request, "recall.html", s, query="", params=params, cards=None, page=0, more=False,
                  prev_url=None, next_url=None, policies=c.policy_names(), random_weights=False, error=error,
                  status_code=400 if error else 200)


def _results(request: Request, c: Console, s: Session, vec, query_text: str, params: dict[str, str]):
    from ops.usecases.times import parse_time
    from search.history import HistoryFilter

    try:
        pg = page_number(params.get("page"))
    except ValueError as e:
        return _form(request, c, s, params, error=str(e))
    try:
        since = parse_time(params["since"]) if params.get("since") else None
        until = parse_time(params["until"]) if params.get("until") else None
    except SludgeError as e:
        return _form(request, c, s, params, error=f"bad time filter: {e}")
    try:
        min_score = float(params["min_score"]) if params.get("min_score") else None
    except ValueError:
        return _form(request, c, s, params, error=f"min score {params['min_score']!r} is not a number "
                                                    "(for example 0.25)")
    where = HistoryFilter(since=since, until=until,
                          layouts=tuple(x for x in [params.get("layout")] if x),
                          sources=tuple(x for x in [params.get("channel")] if x),
                          decisions=tuple(x for x in [params.get("decision")] if x))
    hits = recall_videos(c.app_ctx, vec, history=c.stores.history(), limit=PER_PAGE * (pg + 1),
                         min_score=min_score, where=where)
    shown = hits[PER_PAGE * pg:]
    videos = c.stores.history().get_videos([h.video_id for h in shown]) if shown else {}
    bank = c.stores.bank()
    cards = []
    for h in shown:
        have = {n for _, n in list_thumbnails(c.troot, h.video_id)}
        # one row of small frames in time order, each with its score
        frames = [{"ts": ts, "score": sc, "url": c.thumb_url(h.video_id, ts, have)}
                  for ts, sc in sorted(zip(h.timestamps, h.frame_scores))[:6]]
        labels = bank.labels(video_id=h.video_id)
        sv = videos.get(h.video_id)
        cards.append({"hit": h, "frames": frames, "decision": sv.decision if sv else None,
                      "name": c.display_name(h.video_id, h.path),
                      "label": labels[-1] if labels and labels[-1].verdict != "retract" else None})
    base = {k: v for k, v in params.items() if k != "page" and v}
    return c.page(request, "recall.html", s, query=query_text, params=params, cards=cards, page=pg,
                  more=len(hits) == PER_PAGE * (pg + 1),
                  prev_url=f"/ui/recall?{urlencode({**base, 'page': pg - 1})}" if pg > 0 else None,
                  next_url=f"/ui/recall?{urlencode({**base, 'page': pg + 1})}",
                  policies=c.policy_names(),
                  random_weights=bool(getattr(c.app_ctx.encoder, "random_weights", False)))
