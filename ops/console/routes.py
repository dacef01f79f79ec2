"""The reviewer console: recall, videos, the bank, decisions, sweeps, and labels, under ``/ui``.

Server-rendered (Jinja2, autoescaped) with one small script of our own for
keyboard navigation, confirm/dismiss without a page load, and the live
decision feed. Every page needs a session (sign-in with an API key holding
``read``); changing the bank needs ``admin``; every POST needs the session's
CSRF token. Pages show file names, never server paths. The pages live in
:mod:`ops.console.pages`, what they share in :mod:`ops.console.web`.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ops.console.pages import bank, media, queue, recall, signin, videos
from ops.console.web import HERE, Console
from ops.hooks.state import ApiState


def mount_console(api: FastAPI, state: ApiState) -> None:
    """Add ``/ui`` to the API, sharing its stores, job queue, key store and model lock."""
    console = Console(state)
    api.state.console = console
    api.mount("/ui/static", StaticFiles(directory=str(HERE / "static")), name="console-static")
    console.install(api)
    for module in (signin, media, recall, videos, bank, queue):
        api.include_router(module.router)
