"""What every console page shares: the templates, the session and CSRF checks, and the two page-level errors.

The pages are plain ``APIRouter`` modules under :mod:`ops.console.pages`; they
reach the shared parts through the :data:`Ctx` and :data:`Signed` dependencies
rather than closing over them (:func:`ops.console.routes.mount_console` puts
one :class:`Console` on ``app.state.console``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from indexer.errors import SludgeError
from indexer.thumbs import thumb_name
from ops.console.sessions import COOKIE, Session, Sessions
from ops.hooks.state import ApiState

HERE = Path(__file__).resolve().parent
PER_PAGE = 24


class Redirect(Exception):
    """Answered with a 303 to ``url`` (sign-in when there is no session)."""

    def __init__(self, url: str) -> None:
        self.url = url


class Refused(Exception):
    """Answered with the error page (or ``{"error"}`` JSON to a script) and ``status``."""

    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message


def safe_next(url: str | None) -> str:
    """Only our own pages: no scheme, no host, no protocol-relative '//'."""
    if not url or not url.startswith("/ui") or url.startswith("//") or "\\" in url:
        return "/ui/recall"
    return url


def fmt_time(ts: float | None) -> str:
    if not ts:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(ts)))


class Console:
    """The console's share of the API process: templates, sessions, thumbnails, and the API's state."""

    def __init__(self, state: ApiState) -> None:
        self.state = state
        self.app_ctx = state.app_ctx
        self.settings = state.settings
        self.hooks = state.hooks
        self.stores = state.stores
        self.model_lock = state.model_lock
        self.troot = self.settings.thumbs_dir
        self.sessions = Sessions(state.hooks.client, state.hooks.keys, state.hooks.api_keys)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["t"] = fmt_time
        self.templates.env.filters["basename"] = lambda p: Path(str(p)).name if p else ""

    def page(self, request: Request, template: str, s: Session | None, **ctx: Any) -> HTMLResponse:
        return self.templates.TemplateResponse(request, template, {"s": s, "nav": template.split(".")[0], **ctx})

    def thumb_url(self, video_id: str, ts: float, have: set[str]) -> str | None:
        name = thumb_name(ts)
        return f"/ui/thumbs/{video_id}/{name}" if name in have else None

    def policy_names(self) -> list[str]:
        return [p.name for p in self.stores.bank().list_policies()]

    def install(self, api: FastAPI) -> None:
        """The page-level errors: a redirect, or the error page in place of the page."""

        @api.exception_handler(Redirect)
        async def redirect(_request: Request, e: Redirect):
            return RedirectResponse(e.url, status_code=303)

        @api.exception_handler(Refused)
        async def refused(request: Request, e: Refused):
            if wants_json(request):
                return JSONResponse({"error": {"code": "refused", "message": e.message}}, status_code=e.status)
            return self.templates.TemplateResponse(request, "error.html", {"message": e.message, "s": None,
                                                                           "status": e.status}, status_code=e.status)


def get_console(request: Request) -> Console:
    return request.app.state.console


Ctx = Annotated[Console, Depends(get_console)]


def signed_in(request: Request, c: Ctx) -> Session:
    """The reviewer's session, or a redirect to sign-in that comes back here."""
    s = c.sessions.get(request.cookies.get(COOKIE))
    if s is None:
        raise Redirect("/ui/login?" + urlencode({"next": request.url.path + (
            "?" + request.url.query if request.url.query else "")}))
    return s


Signed = Annotated[Session, Depends(signed_in)]


async def form_with_csrf(request: Request, s: Session):
    form = await request.form(max_files=1, max_fields=30)
    if not s.csrf_ok(form.get("csrf") or request.headers.get("x-csrf-token")):
        await form.close()
        raise Refused(403, "the form's CSRF token is missing or wrong: reload the page and try again")
    return form


def need(s: Session, scope: str) -> None:
    if not s.can(scope):
        raise Refused(403, f"your key ({s.key_id}) lacks the '{scope}' scope needed for this")


def read_upload_image(data: bytes, name: str):
    from search.exemplars import decode_image

    try:
        return decode_image(data, name)
    except SludgeError as e:
        raise Refused(400, str(e)) from None


def wants_json(request: Request) -> bool:
    return request.headers.get("accept", "").startswith("application/json")
