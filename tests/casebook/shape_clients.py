"""Real Electric clients (Node) against a casebook served by uvicorn in the test's loop.

``node_clients`` installs ``tests/js`` (``npm ci``: @electric-sql/client, TanStack DB and
its Electric collection) when missing; ``NodeShapeClient`` runs ``tests/js/shape_client.mjs``
and reads the materialized shape it prints after each ``up-to-date``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from lockstep.testing import free_port

JS = Path(__file__).resolve().parent.parent / "js"
Rows = dict[str, dict[str, str | None]]


def ensure_node_clients() -> Path:
    """``tests/js`` with its node_modules; skips (fails under CI=true) without node/npm."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        message = "node and npm are needed for the Electric client conformance tests"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    if not (JS / "node_modules" / "@electric-sql" / "client").exists():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=JS, check=True, capture_output=True
        )
    return JS


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """``app`` behind a real uvicorn on 127.0.0.1 (lifespan run), in this event loop."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                assert not task.done(), "uvicorn stopped while starting"
                await asyncio.sleep(0.01)  # noqa: sleep - polling uvicorn's started flag
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        server.force_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


def normalized(rows: Mapping[str, Mapping[str, Any]]) -> Rows:
    """Parsed client values back to text (numbers, booleans, bigints) for comparison."""

    def text(value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    # TanStack DB adds virtual properties ($synced, $origin, $key, ...) to its rows.
    return {
        key: {c: text(v) for c, v in row.items() if not c.startswith("$")}
        for key, row in rows.items()
    }


class EventClient:
    """A client that reports events (``rows`` after each up-to-date batch, ``must-refetch``,
    ``txid``, ``error``): what the tests wait for, whatever runs the client."""

    def __init__(self) -> None:
        self.rows: Rows | None = None
        self.events: list[dict[str, Any]] = []

    async def read(self) -> dict[str, Any]:
        raise NotImplementedError

    async def next_event(self) -> dict[str, Any]:
        event = await self.read()
        self.events.append(event)
        if event["event"] == "rows":
            self.rows = normalized(event["rows"])
        if event["event"] == "error":
            raise AssertionError(f"the client failed: {event}")
        return event

    async def until(self, done: Callable[[dict[str, Any]], bool], within: float = 60) -> None:
        """Read events until ``done(event)`` (the rows of a "rows" event are in ``rows``)."""
        async with asyncio.timeout(within):
            while not done(await self.next_event()):
                pass

    async def until_rows(self, expected: Rows, within: float = 60) -> None:
        if self.rows == expected:
            return
        try:
            await self.until(lambda e: e["event"] == "rows" and self.rows == expected, within)
        except TimeoutError:
            got = self.rows or {}
            missing = sorted(set(expected) - set(got))[:5]
            extra = sorted(set(got) - set(expected))[:5]
            wrong = [k for k in expected if k in got and got[k] != expected[k]][:3]
            raise AssertionError(
                f"client never matched: missing {missing}, extra {extra}, differing "
                f"{[(k, got[k], expected[k]) for k in wrong]}"
            ) from None


class NodeShapeClient(EventClient):
    """One ``shape_client.mjs`` process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        super().__init__()
        self.process = process

    @classmethod
    async def start(cls, url: str, token: str, params: Mapping[str, Any], mode: str) -> Any:
        options = {"url": url, "token": token, "params": dict(params), "mode": mode}
        process = await asyncio.create_subprocess_exec(
            shutil.which("node") or "node",
            str(JS / "shape_client.mjs"),
            json.dumps(options),
            cwd=JS,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            limit=64 * 1024 * 1024,
        )
        return cls(process)

    async def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the node client ended; events: {self.events[-3:]}")
        try:
            event: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError:
            event = {"event": "output", "text": line.decode(errors="replace")}
        return event

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((line + "\n").encode())
        await self.process.stdin.drain()

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
