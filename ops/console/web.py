"""What every console page shares: the templates, the session and CSRF checks, and the two page-level errors.

The pages are plain ``APIRouter`` modules under :mod:`ops.console.pages`; they
reach the shared parts through the :data:`Ctx` and :data:`Signed` dependencies
rather than closing over them (:func:`ops.console.routes.mount_console` puts
one :class:`Console` on ``app.state.console``).
"""

from __future__ import annotations

import logging
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
log = logging.getLogger("sludge.console")

#: What a reviewer reads when a store does not answer: what happened and what to do, without the
#: internal addresses and settings the API's own message names (those go to the server log).
STORE_DOWN = ("A store this page reads (the video history, the exemplar bank or the job queue) is not answering, "
              "so the page cannot be shown right now. Nothing you did was lost. Try again in a minute; if it goes "
              "on, tell whoever runs the service.")


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


def audit_change(entry: Any) -> str:
    """What an audit entry changed, in words: before → after for a policy's settings."""
    before, after = entry.before or {}, entry.after or {}
    if entry.action.startswith("label.") and after:
        return f"video {str(after.get('video_id', ''))[:12]} ({after.get('subject')})"
    changed = [f"{k} {before[k]} → {after[k]}" for k in ("threshold", "rule", "enabled", "description")
               if k in before and k in after and before[k] != after[k]]
    if changed:
        return "; ".join(changed)
    item = after or before
    if item.get("kind"):
        source = item.get("source") or ""
        shown = Path(source).name if item["kind"] != "text" else source
        return f"{item['kind']}: {shown[:60]}" + (" (removed)" if not after else "")
    if "threshold" in after:
        return f"threshold {after['threshold']}, rule {after.get('rule', 'best')}" + ("" if before else " (new)")
    return ""


def page_number(value: str | None) -> int:
    """A page parameter (0 when absent); ValueError, in words, for anything else."""
    try:
        n = int(value or 0)
    except ValueError:
        n = -1
    if n < 0:
        raise ValueError(f"page {value!r} is not a page number (0, 1, 2, …)")
    return n


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
        self.templates.env.filters["change"] = audit_change
        self.templates.env.filters["basename"] = lambda p: Path(str(p)).name if p else ""

    def page(self, request: Request, template: str, s: Session | None, *, status_code: int = 200,
             **ctx: Any) -> HTMLResponse:
        return self.templates.TemplateResponse(request, template, {"s": s, "nav": template.split(".")[0], **ctx},
                                               status_code=status_code)

    def thumb_url(self, video_id: str, ts: float, have: set[str]) -> str | None:
        name = thumb_name(ts)
        return f"/ui/thumbs/{video_id}/{name}" if name in have else None

    def display_name(self, video_id: str, path: str, jobs: list | None = None) -> str:
        """The name the video was uploaded under (an upload is stored under its job id), else its file name."""
        jobs = self.hooks.queue.jobs_of_video(video_id) if jobs is None else jobs
        return next((j.source.get("filename") for j in jobs if j.source.get("filename")), Path(path).name)

    def policy_names(self) -> list[str]:
        return [p.name for p in self.stores.bank().list_policies()]

    def failure(self, request: Request, status: int, message: str, *, code: str = "refused"):
        """The error inside the console's frame (navigation, a retry link that keeps the query), or
        ``{"error"}`` JSON to the page's own script."""
        if wants_json(request):
            return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
        try:
            s = self.sessions.get(request.cookies.get(COOKIE))
        except Exception:  # noqa: BLE001 - the sessions' store may be the one that is down
            s = None
        retry = str(request.url.path) + ("?" + request.url.query if request.url.query else "")
        return self.templates.TemplateResponse(
            request, "error.html", {"message": message, "s": s, "status": status, "nav": None,
                                    "retry": retry if request.method == "GET" and status >= 500 else None},
            status_code=status)

    def store_down(self, request: Request, e: Exception):
        log.warning("console %s %s: a store did not answer: %s", request.method, request.url.path, e)
        return self.failure(request, 503, STORE_DOWN, code="store_unavailable")

    def install(self, api: FastAPI) -> None:
        """The page-level errors: a redirect, or the error page in place of the page."""

        @api.exception_handler(Redirect)
        async def redirect(_request: Request, e: Redirect):
            return RedirectResponse(e.url, status_code=303)

        @api.exception_handler(Refused)
        async def refused(request: Request, e: Refused):
            return self.failure(request, e.status, e.message)


def console_for(request: Request) -> Console | None:
    """The console, when the request is for one of its pages (errors are then shown as pages)."""
    if not request.url.path.startswith("/ui"):
        return None
    return getattr(request.app.state, "console", None)


def get_console(request: Request) -> Console:
    return request.app.state.console


Ctx = Annotated[Console, Depends(get_console)]


def signed_in(request: Request, c: Ctx) -> Session:
    """The reviewer's session, or a redirect to sign-in that comes back here."""
    s = c.sessions.get(request.cookies.get(COOKIE))
    if s is None:
        if wants_json(request):  # the page's script: say so, rather than answer with the sign-in page
            raise Refused(401, "your session has ended (signed out, expired or the key was revoked): sign in again")
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
