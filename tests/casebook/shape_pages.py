"""The real Electric clients in Chromium, with no bundler: test-only routes on the app under
test serve ``tests/js`` (``shape_sync.mjs``) and the packages' own ESM builds from
``tests/js/node_modules``, resolved by an import map in the page.

What the page imports: ``@electric-sql/client``'s browser build (``dist/index.browser.mjs``),
``@tanstack/db``, ``@tanstack/db-ivm``, ``@tanstack/electric-db-collection`` and
``@tanstack/pacer-lite`` (``dist/esm``/``dist``, their ``exports``' ``import`` entries),
``fractional-indexing`` (ESM source). ``debug`` (used by the Electric collection for its
logs) and its ``ms`` are CommonJS only: the route wraps their own files in a minimal
``require`` into one ES module. The page is same-origin with ``/v1/shape``, as in an app.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from playwright.async_api import Browser, BrowserContext, Page
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .shape_clients import JS, EventClient

PREFIX = "/__conformance"
MODULES = JS / "node_modules"


def entry(package: str, subpath: str = ".") -> str:
    """The browser ESM file of ``package`` (``subpath`` of its ``exports``), relative to
    node_modules."""
    meta = json.loads((MODULES / package / "package.json").read_text())
    exports: Any = meta.get("exports") or {}
    target: Any = exports if isinstance(exports, str) else exports.get(subpath)
    for condition in ("browser", "import", "default"):
        if isinstance(target, dict) and condition in target:
            target = target[condition]
    if isinstance(target, dict):
        target = target.get("default")
    if not isinstance(target, str):
        target = meta.get("module") or meta["main"]
    return f"{package}/{target.removeprefix('./')}"


def import_map() -> dict[str, dict[str, str]]:
    base = f"{PREFIX}/node_modules/"
    imports = {
        name: base + entry(name)
        for name in (
            "@electric-sql/client",
            "@tanstack/db",
            "@tanstack/db-ivm",
            "@tanstack/electric-db-collection",
            "fractional-indexing",
        )
    }
    for part in ("lite-debouncer", "lite-queuer", "lite-throttler"):
        imports[f"@tanstack/pacer-lite/{part}"] = base + entry("@tanstack/pacer-lite", f"./{part}")
    imports["debug"] = f"{PREFIX}/debug.js"
    return {"imports": imports}


def commonjs_bundle(main: str, packages: Mapping[str, str]) -> str:
    """``main`` (a file under node_modules) and what it requires, as one ES module whose
    default export is its ``module.exports``. ``packages``: bare name -> file."""
    files: dict[str, str] = {}

    def load(name: str) -> None:
        if name in files:
            return
        source = (MODULES / name).read_text()
        files[name] = source
        for required in re.findall(r"require\('([^']+)'\)", source):
            load(resolve(name, required))

    def resolve(origin: str, required: str) -> str:
        if required in packages:
            return packages[required]
        path = (Path(origin).parent / required).as_posix()
        return path if path.endswith(".js") else path + ".js"

    load(main)
    table = ",\n".join(
        f"{json.dumps(name)}: function (module, exports, require) {{\n{source}\n}}"
        for name, source in files.items()
    )
    links = {
        name: {r: resolve(name, r) for r in re.findall(r"require\('([^']+)'\)", source)}
        for name, source in files.items()
    }
    return (
        f"const files = {{{table}}};\nconst links = {json.dumps(links)};\nconst done = {{}};\n"
        "function load(name) {\n  if (!(name in done)) {\n"
        "    const module = { exports: {} };\n    done[name] = module;\n"
        "    files[name](module, module.exports, (r) => load(links[name][r]));\n  }\n"
        "  return done[name].exports;\n}\n"
        f"export default load({json.dumps(main)});\n"
    )


def page_html() -> str:
    return (
        "<!doctype html><meta charset=utf-8><title>conformance</title>\n"
        f'<script type="importmap">{json.dumps(import_map())}</script>\n'
        f'<script type="module" src="{PREFIX}/js/shape_client_browser.mjs"></script>\n'
    )


def install(app: FastAPI) -> None:
    """Add the test-only routes to ``app`` (ahead of its own: casebook's UI catches all)."""
    html = page_html().encode()
    debug = commonjs_bundle("debug/src/browser.js", {"ms": "ms/index.js"}).encode()
    csp = "default-src 'self'; script-src 'self' 'unsafe-inline'"

    async def page(_request: Request) -> Response:
        return Response(html, media_type="text/html", headers={"Content-Security-Policy": csp})

    async def debug_module(_request: Request) -> Response:
        return Response(debug, media_type="text/javascript")

    async def script(request: Request) -> Response:
        root = MODULES if request.path_params["root"] == "node_modules" else JS
        path = (root / request.path_params["path"]).resolve()
        if not path.is_relative_to(root.resolve()) or not path.is_file():
            return Response(b"not found", 404)
        return Response(path.read_bytes(), media_type="text/javascript")

    routes = [
        Route(f"{PREFIX}/index.html", page),
        Route(f"{PREFIX}/debug.js", debug_module),
        Route(PREFIX + "/{root:str}/{path:path}", script),
    ]
    app.router.routes[0:0] = routes


class BrowserShapeClient(EventClient):
    """``shape_sync.mjs`` in a Chromium page of its own context."""

    def __init__(self, context: BrowserContext, page: Page, queue: asyncio.Queue[Any]) -> None:
        super().__init__()
        self.context = context
        self.page = page
        self.queue = queue

    @classmethod
    async def open(cls, browser: Browser, base: str) -> BrowserShapeClient:
        """A page with the clients loaded, none started."""
        context = await browser.new_context()
        page = await context.new_page()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        await page.expose_function("report", queue.put_nowait)
        page.on("pageerror", lambda e: queue.put_nowait({"event": "error", "message": str(e)}))
        client = cls(context, page, queue)
        await page.goto(f"{base}{PREFIX}/index.html")
        await client.until(lambda e: e["event"] == "loaded", within=30)
        return client

    @classmethod
    async def start(
        cls, browser: Browser, base: str, token: str, params: Mapping[str, Any], mode: str
    ) -> BrowserShapeClient:
        client = await cls.open(browser, base)
        page = client.page
        options = {"url": f"{base}/v1/shape", "token": token, "params": dict(params)}
        await page.evaluate("o => window.conformance.start(o)", {**options, "mode": mode})
        return client

    async def sync_scope(self, module: str, token: str, name: str) -> None:
        """Start lockstep.js's ``syncScope(name)`` in the page (events: progress,
        scope-rows, scope-done)."""
        options = {"module": module, "token": token, "name": name}
        await self.page.evaluate("o => { window.conformance.scope(o); }", options)

    async def read(self) -> dict[str, Any]:
        event: dict[str, Any] = await self.queue.get()
        return event

    async def await_txid(self, txid: int) -> None:
        await self.page.evaluate("t => { window.conformance.await(t); }", txid)

    async def close(self) -> None:
        await self.context.close()
