"""Sign-in and sign-out: an API key exchanged for a session cookie, with a double-submit nonce on the form."""

from __future__ import annotations

import secrets
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ops.console.sessions import COOKIE, TTL_S
from ops.console.web import Ctx, Refused, Signed, form_with_csrf, safe_next
from ops.hooks.errors import HooksError

LOGIN_COOKIE = "sludge_login"

router = APIRouter(include_in_schema=False)


@router.get("/ui")
@router.get("/ui/")
def ui_root():
    return RedirectResponse("/ui/recall", status_code=303)


@router.get("/ui/login", response_class=HTMLResponse)
def login_page(request: Request, c: Ctx, next: str | None = None, error: str | None = None):
    nonce = secrets.token_urlsafe(24)  # double-submit token: a login form posted from elsewhere fails
    resp = c.templates.TemplateResponse(request, "login.html", {"s": None, "next": safe_next(next),
                                                                "nonce": nonce, "error": error})
    resp.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="strict", path="/ui",
                    secure=request.url.scheme == "https", max_age=3600)
    return resp


@router.post("/ui/login")
async def login(request: Request, c: Ctx):
    form = await request.form(max_fields=5)
    nxt = safe_next(form.get("next"))
    nonce = request.cookies.get(LOGIN_COOKIE)
    if not nonce or not secrets.compare_digest(nonce, str(form.get("nonce") or "")):
        raise Refused(403, "the sign-in form expired or came from another site: reload it and try again")
    try:
        token, _s = c.sessions.create(str(form.get("api_key") or "").strip())
    except HooksError as e:
        return RedirectResponse("/ui/login?" + urlencode({"next": nxt, "error": str(e)}), status_code=303)
    resp = RedirectResponse(nxt, status_code=303)
    resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/",
                    secure=request.url.scheme == "https", max_age=TTL_S)
    resp.delete_cookie(LOGIN_COOKIE, path="/ui")
    return resp


@router.post("/ui/logout")
async def logout(request: Request, c: Ctx, s: Signed):
    await form_with_csrf(request, s)
    c.sessions.end(request.cookies.get(COOKIE))
    resp = RedirectResponse("/ui/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp
