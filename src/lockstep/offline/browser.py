"""The browser module (``lockstep.js``), served by the app: no CDN, no build step.

    browser = BrowserModule()               # Offline.install(app) mounts one for you
    browser.install(app)
    browser.module_url                      # "/lockstep/<hash>/lockstep.js", for the page

Files (``lockstep/client/static``: lockstep.js, outbox.js, worker.js and the vendored
``@electric-sql/client``) are served under ``/lockstep/<hash>/``, where the hash is of all of
them together (their relative imports stay inside one version): ``Cache-Control: public,
max-age=31536000, immutable``. The service worker is ``/lockstep/sw.js`` (a stable URL, as
a worker's must be; ``no-cache``), a two-line module naming the current hash, sent with
``Service-Worker-Allowed: /`` so it may control the whole app.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import mimetypes
from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

STATIC = Path(__file__).resolve().parent.parent / "client" / "static"
PREFIX = "/lockstep"
IMMUTABLE = "public, max-age=31536000, immutable"
TYPES = {".js": "text/javascript", ".mjs": "text/javascript"}


class BrowserModule:
    """lockstep.js and its service worker, read once from ``directory``."""

    def __init__(self, directory: Path = STATIC, *, prefix: str = PREFIX) -> None:
        self.prefix = prefix.rstrip("/")
        self.files: dict[str, bytes] = {
            path.relative_to(directory).as_posix(): path.read_bytes()
            for path in sorted(directory.rglob("*"))
            if path.is_file()
        }
        digest = hashlib.sha256()
        for name, content in self.files.items():
            digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
        self.version = digest.hexdigest()[:16]
        # Compressed once here, not per request; only where it saves something.
        self.gzipped: dict[str, bytes] = {}
        for name, content in self.files.items():
            packed = gzip.compress(content, compresslevel=9, mtime=0)
            if len(packed) < len(content) - 256:
                self.gzipped[name] = packed
        self.base = f"{self.prefix}/{self.version}/"
        self.worker_url = f"{self.prefix}/sw.js"
        scripts = [self.base + name for name in self.files if name.endswith((".js", ".mjs"))]
        options = {"version": self.version, "base": self.base, "files": scripts}
        self.worker = (
            "// lockstep's service worker (docs/offline.md), for the files of one version\n"
            f'import {{ install }} from "{self.base}worker.js";\n'
            f"install(self, {json.dumps(options)});\n"
        ).encode()

    @property
    def module_url(self) -> str:
        """The URL of ``lockstep.js`` (content-hashed: put it in the page, import it)."""
        return self.base + "lockstep.js"

    def install(self, app: FastAPI) -> None:
        """Add ``GET /lockstep/sw.js`` and ``GET /lockstep/<hash>/{path}`` to ``app``."""
        app.add_route(self.worker_url, self.serve_worker, methods=["GET"], include_in_schema=False)
        app.add_route(
            self.prefix + "/{version}/{path:path}",
            self.serve_file,
            methods=["GET"],
            include_in_schema=False,
        )

    async def serve_worker(self, request: Request) -> Response:
        return Response(
            self.worker,
            media_type="text/javascript",
            headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"},
        )

    async def serve_file(self, request: Request) -> Response:
        version = request.path_params["version"]
        content = self.files.get(request.path_params["path"])
        if content is None or version != self.version:
            # An old version's file is gone: never cache the miss (a deploy is under way).
            return Response(b"not found", 404, {"Cache-Control": "no-store"})
        suffix = Path(request.path_params["path"]).suffix
        media = TYPES.get(suffix) or mimetypes.guess_type(request.path_params["path"])[0]
        headers = {"Cache-Control": IMMUTABLE, "X-Content-Type-Options": "nosniff"}
        packed = self.gzipped.get(request.path_params["path"])
        if packed is not None:
            headers["Vary"] = "Accept-Encoding"
            if accepts_gzip(request.headers.get("accept-encoding", "")):
                content = packed
                headers["Content-Encoding"] = "gzip"
        return Response(content, media_type=media or "text/plain", headers=headers)


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip (``gzip`` or ``*``, not ``;q=0``)."""
    allowed: dict[str, bool] = {}
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        quality = params.strip().removeprefix("q=").strip() if params else "1"
        try:
            allowed[coding.strip().lower()] = float(quality) > 0
        except ValueError:
            allowed[coding.strip().lower()] = False
    return allowed.get("gzip", allowed.get("*", False))
