"""The web UI's server side: the app shell for every page's URL, and the static assets
under a content-hashed URL.

* The shell (``static/index.html``) answers ``/`` and every path under ``/app/``, so a deep
  link, a reload or Back lands on the page it names; the browser's router (``js/main.js``)
  decides what to draw. Nothing else is shadowed: ``/api``, ``/v1/shape``, ``/connection``,
  ``/docs``, ``/openapi.json``, ``/metrics`` and ``/ready`` keep their own routes, and a new
  page needs no change here.
* Assets are served under ``/static/{version}/``, ``version`` being a hash of every file's
  path and content: one changed byte anywhere gives every asset a new URL, so they are
  cached for a year (``immutable``) and a deployment is never mixed with the previous one;
  gzipped when the browser accepts it.
  One hash for the whole folder, not one per file, because the ES modules import each
  other by relative URL: they need no rewriting and no build step.
* lockstep's browser module (``lockstep.js``, its service worker, the vendored Electric
  client) is not among these assets: lockstep serves it under ``/lockstep/{hash}/`` (the
  worker at ``/lockstep/sw.js``); the shell names the module's URL in
  ``<meta name="lockstep-module">``, and ``js/offline.js`` imports it from there.
* The shell itself is ``no-cache`` with a strong ETag: always revalidated (a 304 when
  nothing changed), so a new deployment is seen on the next load.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import Scope

STATIC = Path(__file__).parent / "static"
# lockstep's "static" Cache-Control preset.
IMMUTABLE = "public, max-age=31536000, immutable"


def asset_version(root: Path) -> str:
    """A hash of every file under ``root`` (relative path and content): it changes when any
    asset changes, and only then."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


class ImmutableFiles(StaticFiles):
    """Static files whose URL names their content: cached for a year, never revalidated."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = IMMUTABLE
        return response


def mount_ui(app: FastAPI, root: Path = STATIC, *, lockstep_module: str = "") -> str:
    """Serve the shell at ``/`` and ``/app/…`` and the assets under ``/static/{version}/``;
    returns the version. ``lockstep_module`` is the URL of lockstep.js (content-hashed,
    served by ``Offline.install``): the shell names it in a ``<meta>`` tag, so no inline
    script is needed and the CSP stays as it is."""
    version = asset_version(root)
    assets = f"/static/{version}"
    shell = (
        (root / "index.html")
        .read_text(encoding="utf-8")
        .replace("{{assets}}", assets)
        .replace("{{lockstep_module}}", lockstep_module)
    )
    body = shell.encode()
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {"Cache-Control": "no-cache", "ETag": etag}

    async def page(request: Request) -> Response:
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return HTMLResponse(body, headers=headers)

    for path in ("/", "/app", "/app/{path:path}"):
        app.add_api_route(path, page, methods=["GET", "HEAD"], include_in_schema=False)
    # Compressed for browsers that ask (all do): the JS travels at about a quarter its size.
    app.mount(
        assets, GZipMiddleware(ImmutableFiles(directory=root), minimum_size=1024), name="static"
    )
    return version
