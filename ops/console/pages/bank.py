"""The Bank page: policies with their thresholds and rules, exemplars by policy, the audit; admin changes."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from indexer.errors import SludgeError
from ops.console.web import Ctx, Refused, Signed, form_with_csrf, need, page_number, read_upload_image
from ops.usecases.bank import add_exemplars, exemplars_for, threshold_preview

#: how far back a threshold preview looks (decisions, and sweep candidates per policy)
RECENT = 500

router = APIRouter(include_in_schema=False)


#: exemplars shown per policy, and audit entries, on one page of the Bank
PER_BANK_PAGE = 60


def _page_number(value: str | None, what: str) -> int:
    try:
        return page_number(value)
    except ValueError as e:
        raise Refused(400, f"{e} ({what})") from None


@router.get("/ui/bank", response_class=HTMLResponse)
def bank_page(request: Request, c: Ctx, s: Signed, page: str | None = None, audit_page: str | None = None):
    """Policies with their exemplars (``PER_BANK_PAGE`` each, ``page`` for the next ones) and the audit log
    (``audit_page``)."""
    pg, apg = _page_number(page, "page"), _page_number(audit_page, "audit page")
    bank = c.stores.bank()
    pols = bank.list_policies()
    by_policy, more = {}, False
    for p in pols:
        items = bank.list(policy=p.name)
        by_policy[p.name] = items[PER_BANK_PAGE * pg: PER_BANK_PAGE * (pg + 1)]
        more = more or len(items) > PER_BANK_PAGE * (pg + 1)
    audit = bank.audit(limit=PER_BANK_PAGE * (apg + 1) + 1)
    older = len(audit) > PER_BANK_PAGE * (apg + 1)

    def link(**q: int) -> str:
        return "/ui/bank?" + urlencode({k: v for k, v in {"page": pg, "audit_page": apg, **q}.items() if v})

    return c.page(request, "bank.html", s, policies=pols, by_policy=by_policy,
                  audit=audit[PER_BANK_PAGE * apg: PER_BANK_PAGE * (apg + 1)],
                  default_threshold=c.settings.bank.default_threshold, page=pg,
                  prev_url=link(page=pg - 1) if pg > 0 else None, next_url=link(page=pg + 1) if more else None,
                  audit_newer_url=link(audit_page=apg - 1) + "#audit" if apg > 0 else None,
                  audit_older_url=link(audit_page=apg + 1) + "#audit" if older else None)


@router.post("/ui/bank/exemplars")
async def bank_add(request: Request, c: Ctx, s: Signed):
    from starlette.datastructures import UploadFile

    from search.types import check_policy_name

    form = await form_with_csrf(request, s)
    try:
        need(s, "admin")
        policy = str(form.get("policy") or "").strip()
        text = str(form.get("text") or "").strip()
        up = form.get("image")
        note = str(form.get("note") or "")[:500]
        try:
            check_policy_name(policy)
            threshold = float(form.get("threshold") or c.settings.bank.default_threshold)
        except (SludgeError, ValueError) as e:
            raise Refused(400, str(e)) from None
        bank = c.stores.bank(with_encoder=True)
        actor = s.reviewer
        try:
            if isinstance(up, UploadFile) and up.filename:
                data = await up.read()
                read_upload_image(data, up.filename)  # refuse non-images before keeping anything
                # one folder per content, the file under the name it was uploaded with (shown on the page)
                keep = c.settings.exemplars_dir / hashlib.sha256(data).hexdigest() / _safe_name(up.filename)
                keep.parent.mkdir(parents=True, exist_ok=True)
                keep.write_bytes(data)
                items = exemplars_for(c.app_ctx, policy, image=keep, note=note, added_by=actor, lock=c.model_lock)
            elif text:
                items = exemplars_for(c.app_ctx, policy, text=text, note=note, added_by=actor, lock=c.model_lock)
            else:
                raise Refused(400, "give a text or an image")
            add_exemplars(c.app_ctx, bank, items, threshold=threshold, actor=actor)
        except SludgeError as e:
            raise Refused(400, str(e)) from None
    finally:
        await form.close()
    return RedirectResponse("/ui/bank", status_code=303)


def _safe_name(filename: str) -> str:
    """The upload's own file name, reduced to characters that are safe in any file system."""
    name = re.sub(r"[^A-Za-z0-9._ -]+", "_", filename.replace("\\", "/").rsplit("/", 1)[-1]).strip(" .") or "image"
    stem, dot, ext = name.rpartition(".")
    return (stem[:80] + dot + ext[:8]) if dot else name[:80]


@router.post("/ui/bank/exemplars/{exemplar_id}/{action}")
async def bank_change(request: Request, exemplar_id: str, action: str, c: Ctx, s: Signed):
    await form_with_csrf(request, s)
    need(s, "admin")
    bank = c.stores.bank()
    try:
        ex = bank.resolve(exemplar_id)
        if action == "remove":
            bank.remove(ex.exemplar_id, actor=s.reviewer)
        elif action in ("enable", "disable"):
            bank.set_enabled(ex.exemplar_id, action == "enable", actor=s.reviewer)
        else:
            raise Refused(404, f"unknown action {action!r}")
    except SludgeError as e:
        raise Refused(400, str(e)) from None
    return RedirectResponse("/ui/bank", status_code=303)


@router.get("/ui/bank/policies/{name}/preview")
def bank_policy_preview(name: str, c: Ctx, s: Signed, threshold: str = ""):
    """How many recent decisions and sweep candidates of the policy a new threshold would flip."""
    try:
        new = float(threshold)
    except ValueError:
        raise Refused(400, f"threshold {threshold!r} is not a number") from None
    try:
        pol = c.stores.bank().require_policy(name)
    except SludgeError as e:
        raise Refused(404, str(e)) from None
    queue = c.hooks.queue
    jobs = queue.get_many([e["job"] for e in queue.recent_decisions(RECENT)])
    decided = [p.get("score") for job in jobs.values() for p in (job.decision or {}).get("policies", [])
               if p.get("policy") == name]
    candidates = [cand.score for cand in c.stores.history().sweep_candidates(name, limit=RECENT)]
    return JSONResponse({"policy": name, "recent": RECENT,
                         "decisions": threshold_preview(decided, pol.threshold, new).to_dict(),
                         "candidates": threshold_preview(candidates, pol.threshold, new).to_dict()})


@router.post("/ui/bank/policies/{name}")
async def bank_policy(request: Request, name: str, c: Ctx, s: Signed):
    from dataclasses import replace

    from search.types import Rule

    form = await form_with_csrf(request, s)
    need(s, "admin")
    bank = c.stores.bank()
    try:
        pol = bank.require_policy(name)
        new = replace(pol, threshold=float(form.get("threshold")),
                      rule=Rule.parse(str(form.get("rule") or pol.rule)))
        bank.put_policy(new, actor=s.reviewer)
    except (SludgeError, ValueError, TypeError) as e:
        raise Refused(400, f"cannot change policy {name}: {e}") from None
    return RedirectResponse("/ui/bank", status_code=303)
