"""`GET /docs` works offline: the Swagger UI page names only the app's own URLs, the app answers
each of them, and headless Chromium (every request to another host refused) renders the routes
of /openapi.json (OpenAPI 3.1). A real uvicorn server on the SAM 1 shapes fixture model."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
import pytest

from samkit.server.app import create_app
from samkit.server.docs import ASSETS
from tests.server.conftest import live_server
from tests.server.test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def url(sam1_shapes):
    with live_server(
        create_app(sam1_shapes, cache_bytes=8 * 2**20, max_upload_bytes=2**20)
    ) as base:
        yield base


def _page_urls(html: str) -> list[str]:
    """Every URL the page loads: src= / href= attributes and the script's `url: '...'`."""
    attrs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    return attrs + re.findall(r"""\burl:\s*["']([^"']+)["']""", html)


def test_docs_names_only_local_urls_that_answer(url) -> None:
    r = httpx.get(f"{url}/docs")
    assert r.status_code == 200 and "SwaggerUIBundle" in r.text, r.text[:300]
    urls = _page_urls(r.text)
    assert sorted(urls) == sorted([*ASSETS, "/openapi.json"]), urls
    assert "//" not in r.text, "a URL with a host in the page"
    assert '"validatorUrl": null' in r.text  # no badge from validator.swagger.io
    for path in urls:
        got = httpx.get(f"{url}{path}")
        assert got.status_code == 200 and got.content, path
    kinds = {p: httpx.get(f"{url}{p}").headers["content-type"] for p in ASSETS}
    assert kinds == {p: ctype for p, (_, ctype) in ASSETS.items()}
    assert httpx.get(f"{url}/openapi.json").json()["openapi"].startswith("3.1")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")
def test_swagger_ui_renders_the_routes_offline(url) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    host = urlsplit(url).netloc
    elsewhere: list[str] = []
    errors: list[str] = []

    def only_local(route) -> None:
        if urlsplit(route.request.url).netloc == host:
            route.continue_()
        else:  # what an offline browser would fail to load
            elsewhere.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.route("**/*", only_local)
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{url}/docs")
            find = page.locator(".opblock-summary-path", has_text="/api/images/{image_id}/find")
            find.first.wait_for()
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            rendered = page.locator(".swagger-ui").inner_text()
        finally:
            browser.close()
    assert not elsewhere, elsewhere
    assert not errors, errors
    assert "Unable to render this definition" not in rendered
    spec = httpx.get(f"{url}/openapi.json").json()
    want = {p for p, ops in spec["paths"].items() for _ in ops}
    assert {p.replace("\u200b", "") for p in paths} == want, paths


def test_without_the_assets_docs_is_fastapis_cdn_page(monkeypatch, sam1_shapes) -> None:
    from fastapi.testclient import TestClient

    import samkit.server.docs as docs

    monkeypatch.setattr(docs, "swagger_assets", lambda: None)
    app = create_app(sam1_shapes, cache_bytes=8 * 2**20, max_upload_bytes=2**20)
    with TestClient(app) as c:
        page = c.get("/docs")
        assert page.status_code == 200 and "cdn.jsdelivr.net" in page.text, page.text[:300]
        assert c.get(next(iter(ASSETS))).status_code == 404
