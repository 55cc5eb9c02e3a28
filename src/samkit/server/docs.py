"""`GET /docs` (Swagger UI) served whole by the app, so that it works offline.

FastAPI's own /docs page loads Swagger UI's script and stylesheet from a CDN: without the
network it stays blank. Here the page (FastAPI's `get_swagger_ui_html`) names only the app's own
routes: `/static/docs/swagger-ui-bundle.js`, `/static/docs/swagger-ui.css` and
`/static/docs/favicon.png`, and Swagger UI's online validator badge is off (`validatorUrl` null).

The files come from the `fastapi-offline` package (MIT, a dependency of the `server` extra; it
ships Swagger UI 5, which renders the OpenAPI 3.1 documents FastAPI writes; `swagger-ui-bundle`
ships Swagger UI 4.15, which reads OpenAPI 3.0 only and shows "Unable to render this
definition" for them). They are read once, when the app is created, like the page's own files:
no path taken from a request is opened. Without the package, /docs is FastAPI's CDN page and a
warning says what to install.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

logger = logging.getLogger(__name__)

DOCS_URL = "/docs"
ASSETS = {  # route -> (file in fastapi_offline/static, media type)
    "/static/docs/swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    "/static/docs/swagger-ui.css": ("swagger-ui.css", "text/css; charset=utf-8"),
    "/static/docs/favicon.png": ("favicon.png", "image/png"),
}


def swagger_assets() -> dict[str, tuple[bytes, str]] | None:
    """route -> (bytes, media type) of Swagger UI's files, or None without `fastapi-offline`."""
    try:
        folder = resources.files("fastapi_offline") / "static"
    except ModuleNotFoundError:
        return None
    return {route: ((folder / name).read_bytes(), ctype) for route, (name, ctype) in ASSETS.items()}


def add_docs_route(app: FastAPI) -> bool:
    """Register `GET /docs` on an app made with `docs_url=None`: Swagger UI from the app's own
    routes (True), or from FastAPI's CDN when `fastapi-offline` is not installed (False, with a
    warning). `/openapi.json` is FastAPI's, unchanged."""
    assets = swagger_assets()
    urls: dict[str, Any] = {}
    if assets is None:
        logger.warning(
            "fastapi-offline is not installed: /docs loads Swagger UI from a CDN and needs the "
            "browser online (pip install 'samkit[server]' or fastapi-offline)"
        )
    else:
        js, css, icon = ASSETS
        urls = {"swagger_js_url": js, "swagger_css_url": css, "swagger_favicon_url": icon}

        def asset_route(body: bytes, ctype: str) -> Any:
            async def serve() -> Response:
                return Response(body, media_type=ctype, headers={"Cache-Control": "max-age=3600"})

            return serve

        for route, (body, ctype) in assets.items():
            app.add_api_route(
                route, asset_route(body, ctype), methods=["GET"], include_in_schema=False
            )
    title = f"{app.title} - Swagger UI"
    params = {"validatorUrl": None}  # no badge fetched from validator.swagger.io

    async def docs() -> HTMLResponse:
        openapi_url = app.openapi_url or "/openapi.json"
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=title, swagger_ui_parameters=params, **urls
        )

    app.add_api_route(DOCS_URL, docs, methods=["GET"], include_in_schema=False)
    return assets is not None
