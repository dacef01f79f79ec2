"""``/docs``: Swagger UI served from a Python package, so it works with no internet.

FastAPI's default page loads Swagger UI from a CDN, which these machines (and
many production networks) cannot reach. The ``fastapi-swagger`` distribution
carries a current Swagger UI 5 build (needed for OpenAPI 3.1, which FastAPI
writes); only its static files are used, through FastAPI's own page builder.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"


def swagger_ui_dir() -> Path:
    import fastapi_swagger

    return Path(fastapi_swagger.__file__).parent / "resources"


def install_docs(api: FastAPI) -> None:
    api.mount(ASSETS, StaticFiles(directory=str(swagger_ui_dir())), name="swagger-ui")

    @api.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=api.openapi_url or "/openapi.json", title=f"{api.title} API",
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon-32x32.png")
