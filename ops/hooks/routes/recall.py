"""``POST /v1/recall``: text-to-frame search over the history, the API's side of ``sludge recall``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ops.hooks.keys import ApiKey
from ops.hooks.schemas import KEYED, RecallRequest, RecallView, error_responses
from ops.hooks.state import State, require
from ops.usecases.recall import embed_queries, recall_videos

router = APIRouter()


@router.post("/v1/recall", tags=["recall"], response_model=RecallView, responses=error_responses(*KEYED))
def recall(body: RecallRequest, st: State, key: ApiKey = require("read")) -> RecallView:
    """Text-to-frame search over every indexed upload, grouped by video (as `sludge recall`)."""
    from search.history import HistoryFilter

    app_ctx = st.app_ctx
    where = HistoryFilter(since=body.since, until=body.until, layouts=tuple(body.layouts),
                          sources=tuple(body.sources), decisions=tuple(body.decisions))
    vec = embed_queries(app_ctx, texts=[body.query], lock=st.model_lock)[0]
    hits = recall_videos(app_ctx, vec, history=st.stores.history(), limit=body.limit, min_score=body.min_score,
                         where=where, transcript=body.transcript)
    return RecallView(query=body.query, model_id=app_ctx.encoder.model_id,
                      random_weights=bool(getattr(app_ctx.encoder, "random_weights", False)),
                      results=[_public_hit(h.to_dict()) for h in hits])


def _public_hit(d: dict[str, Any]) -> dict[str, Any]:
    d = dict(d)
    d.pop("path", None)  # server paths stay on the server
    return d
