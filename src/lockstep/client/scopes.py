"""``ScopeSync``: an app's sync scope (``GET /v1/sync/scopes/{name}``) followed from Python.

    sync = ScopeSync(client, "my-cases")
    async for step in sync.run():          # shapes by priority, then the prefetch paths
        print(f"{step.done}/{step.total} {step.stage} {step.name}")
    sync.shapes["cases"].rows              # each a Shape, up to date; keep them live with
                                           # Shape.follow()

The server binds the scope to the caller and answers its shapes in priority order (each as
the params of a ``GET /v1/shape``); a priority's shapes are synced together, the next
priority starts only when each of them is up to date. Prefetch paths are then fetched
through the client's ETag cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from lockstep.client.client import Client
from lockstep.client.shapes import Shape


@dataclass(frozen=True, slots=True)
class Progress:
    """One step of :meth:`ScopeSync.run`: a shape ``synced`` (``rows``), or a prefetch path
    ``fetched`` (``status``); ``done`` of ``total`` steps."""

    stage: str  # "shape" | "prefetch"
    name: str
    priority: int | None
    done: int
    total: int
    rows: int | None = None
    status: int | None = None


class ScopeSync:
    """The scope ``name`` of the app behind ``client``."""

    def __init__(
        self,
        client: Client,
        name: str,
        *,
        path: str = "/v1/sync/scopes",
        shape_path: str = "/v1/shape",
    ) -> None:
        self.client = client
        self.name = name
        self.path = path
        self.shape_path = shape_path
        self.answer: dict[str, Any] = {}
        self.shapes: dict[str, Shape] = {}

    async def load(self) -> dict[str, Any]:
        """The server's answer for this caller (raises ``httpx.HTTPStatusError`` on a 4xx)."""
        response = await self.client.get(f"{self.path}/{quote(self.name, safe='')}")
        response.raise_for_status()
        self.answer = response.json()
        return self.answer

    def _shape(self, params: dict[str, Any]) -> Shape:
        columns = params.get("columns")
        return Shape(
            self.client,
            params["table"],
            where=params.get("where"),
            params=[str(p) for p in params.get("params", [])],
            columns=columns.split(",") if columns else None,
            path=self.shape_path,
        )

    async def run(self) -> AsyncIterator[Progress]:
        """Load the scope, sync its shapes by priority and fetch its prefetch paths,
        yielding a :class:`Progress` after each."""
        answer = await self.load()
        items = answer["shapes"]
        total = len(items) + len(answer["prefetch"])
        done = 0
        groups: list[list[dict[str, Any]]] = []
        for item in items:
            if groups and groups[-1][0]["priority"] == item["priority"]:
                groups[-1].append(item)
            else:
                groups.append([item])
        for group in groups:
            tasks = []
            for item in group:
                shape = self.shapes[item["name"]] = self._shape(item["params"])
                tasks.append(asyncio.ensure_future(_synced(item, shape)))
            try:
                for finished in asyncio.as_completed(tasks):
                    item = await finished
                    done += 1
                    rows = len(self.shapes[item["name"]].rows)
                    yield Progress("shape", item["name"], item["priority"], done, total, rows=rows)
            finally:
                for task in tasks:
                    task.cancel()
        for path in answer["prefetch"]:
            response = await self.client.get(path)
            done += 1
            yield Progress("prefetch", path, None, done, total, status=response.status_code)


async def _synced(item: dict[str, Any], shape: Shape) -> dict[str, Any]:
    """``item`` once ``shape`` is up to date (a 409 refetches inside ``poll``)."""
    while not await shape.poll():
        pass
    return item
