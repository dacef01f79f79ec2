"""``/v1/bank``: the exemplar bank's policies, exemplars and audit, over the API (as ``sludge bank``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from ops.hooks.keys import ApiKey
from ops.hooks.schemas import (
    KEYED,
    ExemplarId,
    PolicyBody,
    PolicyName,
    TextExemplarBody,
    error_responses,
)
from ops.hooks.state import State, require
from ops.usecases.bank import add_exemplars, exemplars_for
from search.types import POLICY_NAME_PATTERN

router = APIRouter()


@router.get("/v1/bank/policies", tags=["bank"], responses=error_responses(*KEYED))
def list_policies(st: State, key: ApiKey = require("read")) -> dict[str, Any]:
    b = st.stores.bank()
    counts = b.counts()
    return {"policies": [{**p.to_dict(), "exemplars": counts.get(p.name, {})} for p in b.list_policies()]}


@router.put("/v1/bank/policies/{name}", tags=["bank"], responses=error_responses(*KEYED))
def put_policy(name: PolicyName, body: PolicyBody, st: State, key: ApiKey = require("admin")) -> dict[str, Any]:
    """Create a policy or change its threshold, rule and description (audited under the key id)."""
    from search.types import Policy, Rule

    bank = st.stores.bank()
    old = bank.get_policy(name)
    p = Policy(name, body.threshold, Rule.parse(body.rule), body.description,
               created_at=old.created_at if old else None)
    return bank.put_policy(p, actor=f"api:{key.key_id}").to_dict()


@router.get("/v1/bank/exemplars", tags=["bank"], responses=error_responses(*KEYED))
def list_exemplars(st: State, policy: Annotated[str | None, Query(pattern=POLICY_NAME_PATTERN)] = None,
                   enabled: bool | None = None, limit: Annotated[int, Query(ge=1, le=10000)] = 100,
                   key: ApiKey = require("read")) -> dict[str, Any]:
    from search.bank import exemplar_public

    items = st.stores.bank().list(policy=policy, enabled=enabled)[:limit]
    return {"exemplars": [exemplar_public(e) for e in items]}


_EXEMPLAR_ID_OF_201 = {"exemplar_id": "$response.body#/exemplar/exemplar_id"}


@router.post("/v1/bank/exemplars", status_code=201, tags=["bank"], responses={
    **error_responses(*KEYED), 201: {"description": "added (or already there: `created` false)", "links": {
        "DisableExemplar": {"operationId": "toggle_exemplar_v1_bank_exemplars__exemplar_id___action__post",
                            "parameters": {**_EXEMPLAR_ID_OF_201, "action": "disable"}},
        "RemoveExemplar": {"operationId": "remove_exemplar_v1_bank_exemplars__exemplar_id__delete",
                           "parameters": _EXEMPLAR_ID_OF_201}}}})
def add_text_exemplar(body: TextExemplarBody, st: State, key: ApiKey = require("admin")) -> dict[str, Any]:
    """Add a text exemplar (a description of what the policy targets), creating the policy if new."""
    from search.bank import exemplar_public

    b = st.stores.bank(with_encoder=True)
    actor = f"api:{key.key_id}"
    # the text is checked (and embedded) before the policy is made
    items = exemplars_for(st.app_ctx, body.policy, text=body.text, note=body.note, added_by=actor,
                          lock=st.model_lock)
    [res] = add_exemplars(st.app_ctx, b, items, threshold=body.threshold, actor=actor).results
    return {"created": res.created, "exemplar": exemplar_public(res.exemplar)}


@router.post("/v1/bank/exemplars/{exemplar_id}/{action}", tags=["bank"], responses=error_responses(*KEYED, 404))
def toggle_exemplar(exemplar_id: ExemplarId, action: Literal["enable", "disable"], st: State,
                    key: ApiKey = require("admin")) -> dict[str, Any]:
    from search.bank import exemplar_public

    b = st.stores.bank()
    ex = b.set_enabled(b.resolve(exemplar_id).exemplar_id, action == "enable", actor=f"api:{key.key_id}")
    return exemplar_public(ex)


@router.delete("/v1/bank/exemplars/{exemplar_id}", tags=["bank"], responses=error_responses(*KEYED, 404))
def remove_exemplar(exemplar_id: ExemplarId, st: State, key: ApiKey = require("admin")) -> dict[str, Any]:
    from search.bank import exemplar_public

    b = st.stores.bank()
    return exemplar_public(b.remove(b.resolve(exemplar_id).exemplar_id, actor=f"api:{key.key_id}"))


@router.get("/v1/bank/audit", tags=["bank"], responses=error_responses(*KEYED))
def audit(st: State, limit: Annotated[int, Query(ge=1, le=10000)] = 100,
          target: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
          key: ApiKey = require("read")) -> dict[str, Any]:
    return {"entries": [e.to_dict() for e in st.stores.bank().audit(limit=limit, target=target)]}
