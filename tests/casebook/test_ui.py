"""The web UI's server side: the shell answers every page's address under /app/ (and
nothing else's), revalidated with an ETag; the assets live under a content-hashed URL,
cached for a year."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from casebook.ui import STATIC, asset_version
from lockstep.offline.browser import STATIC as MODULE


async def test_the_shell_answers_every_page_address_and_revalidates(
    anonymous: httpx.AsyncClient,
) -> None:
    for path in ("/", "/app", "/app/cases", "/app/cases/12/transactions", "/app/no-such-page"):
        response = await anonymous.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["cache-control"] == "no-cache"
        assert "default-src 'self'" in response.headers["content-security-policy"]
    etag = response.headers["etag"]
    head = await anonymous.head("/app/cases/7")  # link checkers and monitors ask with HEAD
    assert (head.status_code, head.headers["etag"]) == (200, etag)
    again = await anonymous.get("/app/cases/7", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.headers["etag"] == etag


async def test_the_shell_shadows_no_other_route(anonymous: httpx.AsyncClient) -> None:
    assert (await anonymous.get("/api/v1/cases")).json()["error"]["code"] == "unauthenticated"
    assert (await anonymous.get("/api/v1/app/cases")).status_code == 404
    assert (await anonymous.get("/openapi.json")).json()["info"]["title"] == "casebook"
    assert "swagger-ui" in (await anonymous.get("/docs")).text
    assert "http_requests_total" in (await anonymous.get("/metrics")).text
    assert (await anonymous.get("/ready")).status_code == 200
    shape = await anonymous.get("/v1/shape?table=cases&offset=-1")
    assert not shape.headers["content-type"].startswith("text/html")
    sse = await anonymous.get("/connection/uni_sse")
    assert not sse.headers.get("content-type", "").startswith("text/html")


async def test_assets_are_fingerprinted_and_immutable(anonymous: httpx.AsyncClient) -> None:
    shell = (await anonymous.get("/app/cases")).text
    assets = re.findall(r'(?:href|src)="(/static/[0-9a-f]{16}/[^"]+)"', shell)
    assert {a.rsplit("/", 1)[-1] for a in assets} >= {"app.css", "main.js", "centrifuge.js"}
    for asset in assets:
        response = await anonymous.get(asset)
        assert response.status_code == 200, asset
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    script = next(a for a in assets if a.endswith("main.js"))
    zipped = await anonymous.get(script, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["cache-control"] == "public, max-age=31536000, immutable"
    version = assets[0].split("/")[2]
    # Modules import each other relatively, under the same versioned prefix.
    assert (await anonymous.get(f"/static/{version}/js/pages/case.js")).status_code == 200
    assert (await anonymous.get("/static/0123456789abcdef/js/main.js")).status_code == 404
    assert (await anonymous.get("/static/app.css")).status_code == 404


def test_the_version_names_the_content(tmp_path: Path) -> None:
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "a.js").write_text("export const a = 1;\n")
    (tmp_path / "app.css").write_text("body{}\n")
    first = asset_version(tmp_path)
    assert asset_version(tmp_path) == first
    (tmp_path / "js" / "a.js").write_text("export const a = 2;\n")
    assert asset_version(tmp_path) != first
    (tmp_path / "js" / "a.js").write_text("export const a = 1;\n")
    assert asset_version(tmp_path) == first
    (tmp_path / "js" / "a.js").rename(tmp_path / "js" / "b.js")
    assert asset_version(tmp_path) != first


async def test_the_shell_names_lockstep_module_without_an_inline_script(
    anonymous: httpx.AsyncClient,
) -> None:
    response = await anonymous.get("/app/cases/7")
    shell = response.text
    assert "{{" not in shell  # every placeholder filled
    module = re.search(r'<meta name="lockstep-module" content="([^"]+)">', shell)
    assert module is not None
    assert re.fullmatch(r"/lockstep/[0-9a-f]+/lockstep\.js", module[1])
    # Scripts only by URL: the CSP (default-src 'self') needs no exception for inline code.
    assert re.findall(r"<script(?![^>]*\ssrc=)[^>]*>", shell) == []
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    served = await anonymous.get(module[1])
    assert served.status_code == 200
    assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
    worker = await anonymous.get("/lockstep/sw.js")
    assert worker.status_code == 200


async def test_all_the_javascript_a_user_can_load_weighs_under_150_kb_on_the_wire(
    anonymous: httpx.AsyncClient,
) -> None:
    """The issue's budget: every script of the UI, the vendored clients and lockstep's
    browser module (service worker included) together, as served (gzip). Their sizes as
    files are in docs/casebook.md."""
    shell = (await anonymous.get("/app/cases/7")).text
    version = re.findall(r'src="/static/([0-9a-f]{16})/', shell)[0]
    module = re.search(r'<meta name="lockstep-module" content="(/lockstep/[0-9a-f]+/)', shell)
    assert module is not None
    urls = [f"/static/{version}/{p.relative_to(STATIC).as_posix()}" for p in STATIC.rglob("*.js")]
    urls += [
        module[1] + p.relative_to(MODULE).as_posix()
        for p in MODULE.rglob("*.*js")
        if p.name != "worker.js"
    ] + ["/lockstep/sw.js"]
    on_wire = 0
    for url in urls:
        response = await anonymous.get(url, headers={"Accept-Encoding": "gzip"})
        assert response.status_code == 200, url
        on_wire += response.num_bytes_downloaded
    assert len(urls) >= 22
    assert on_wire < 150_000, on_wire
