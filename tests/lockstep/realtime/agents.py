"""The official SDKs as test agents with one interface: centrifuge-js (5.0 and the latest
5.x, in Node 20, steered over stdin/stdout by ``sdk/agent.mjs``) and centrifuge-python
(in this process). A scenario is written once and runs against each.

Every agent records events as dicts (``{"event": "publication", "channel", "data",
"offset"}``, ``subscribed`` with ``recovered``/``wasRecovering``, ``unsubscribed``,
``connecting``/``disconnected`` with ``code``, ``get_token``...). ``await agent.next(pred)``
waits, with a deadline, for the first event after the last one matched.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

SDK_DIR = Path(__file__).parent / "sdk"

Predicate = Callable[[dict[str, Any]], bool]


def node_ready() -> str | None:
    """Why the JavaScript SDK cannot run here, or None (installs it from the lock file)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node 20 and npm are needed for the centrifuge-js conformance tests"
    if not (SDK_DIR / "node_modules" / "centrifuge").exists():
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=SDK_DIR,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            return f"npm ci failed: {done.stderr[-500:]}"
    return None


class Agent:
    """Events and the wait for them, shared by both SDKs."""

    name = "agent"

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.cursor = 0
        self._changed = asyncio.Event()

    def record(self, event: dict[str, Any]) -> None:
        self.seen.append(event)
        self._changed.set()

    async def next(self, predicate: Predicate, within: float = 15.0) -> dict[str, Any]:
        """The first event from the cursor on that matches; the cursor moves past it."""
        try:
            async with asyncio.timeout(within):
                while True:
                    for index in range(self.cursor, len(self.seen)):
                        if predicate(self.seen[index]):
                            self.cursor = index + 1
                            return self.seen[index]
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"{self.name}: no such event; seen: {self.seen[-20:]}") from None

    async def collect(self, predicate: Predicate, count: int, within: float = 20.0) -> list[Any]:
        """The next ``count`` matching events, in order."""
        return [await self.next(predicate, within) for _ in range(count)]

    def since_cursor(self, predicate: Predicate) -> list[dict[str, Any]]:
        return [e for e in self.seen[self.cursor :] if predicate(e)]

    async def call(self, op: str, **args: Any) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


def publication(channel: str) -> Predicate:
    return lambda e: (
        e.get("event") in ("publication", "server_publication") and e.get("channel") == channel
    )


def event(name: str, channel: str | None = None) -> Predicate:
    return lambda e: e.get("event") == name and (channel is None or e.get("channel") == channel)


class JsAgent(Agent):
    """centrifuge-js in Node (``package`` is ``centrifuge`` or ``centrifuge-5.0``)."""

    def __init__(self, package: str) -> None:
        super().__init__()
        self.name = package
        self.package = package
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> JsAgent:
        self._proc = await asyncio.create_subprocess_exec(
            "node",
            "agent.mjs",
            self.package,
            cwd=SDK_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
        )
        self._reader = asyncio.create_task(self._read())
        await self.next(event("ready"))
        return self

    async def _read(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        async for line in self._proc.stdout:
            message = orjson.loads(line)
            if "reply" in message:
                future = self._replies.pop(message["reply"], None)
                if future is not None and not future.done():
                    future.set_result(message)
            else:
                self.record(message)

    async def call(self, op: str, **args: Any) -> Any:
        assert self._proc is not None
        assert self._proc.stdin is not None
        command_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[command_id] = future
        self._proc.stdin.write(orjson.dumps({"id": command_id, "op": op, **args}) + b"\n")
        await self._proc.stdin.drain()
        async with asyncio.timeout(15):
            reply = await future
        if "error" in reply:
            raise SdkError(reply["error"].get("code"), reply["error"].get("message"))
        return reply["ok"]

    async def close(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


class SdkError(Exception):
    def __init__(self, code: int | None, message: str | None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class PyAgent(Agent):
    """centrifuge-python, in this process."""

    name = "centrifuge-python"

    def __init__(self) -> None:
        super().__init__()
        self.client: Any = None
        self.subs: dict[str, Any] = {}

    async def start(self) -> PyAgent:
        return self

    async def call(self, op: str, **args: Any) -> Any:
        import centrifuge

        agent = self
        if op == "connect":
            token_url = args.get("tokenUrl")

            async def get_token() -> str:
                async with httpx.AsyncClient() as http:
                    body = (await http.get(token_url)).json()
                agent.record({"event": "get_token"})
                return str(body["token"])

            class Events(centrifuge.ClientEventHandler):
                async def on_connecting(self, ctx: Any) -> None:
                    agent.record({"event": "connecting", "code": ctx.code, "reason": ctx.reason})

                async def on_connected(self, ctx: Any) -> None:
                    agent.record({"event": "connected", "client": ctx.client})

                async def on_disconnected(self, ctx: Any) -> None:
                    agent.record({"event": "disconnected", "code": ctx.code, "reason": ctx.reason})

                async def on_subscribed(self, ctx: Any) -> None:
                    agent.record({"event": "server_subscribed", "channel": ctx.channel})

                async def on_publication(self, ctx: Any) -> None:
                    agent.record(
                        {
                            "event": "server_publication",
                            "channel": ctx.channel,
                            "data": ctx.pub.data,
                            "offset": ctx.pub.offset,
                        }
                    )

            self.client = centrifuge.Client(
                args["url"],
                events=Events(),
                token=args.get("token", ""),
                get_token=get_token if token_url else None,
                min_reconnect_delay=0.05,
                max_reconnect_delay=0.3,
                proxy=None,
            )
            await self.client.connect()
            return None
        if op == "subscribe":
            channel = args["channel"]

            class SubEvents(centrifuge.SubscriptionEventHandler):
                async def on_subscribed(self, ctx: Any) -> None:
                    agent.record(
                        {
                            "event": "subscribed",
                            "channel": channel,
                            "recovered": ctx.recovered,
                            "wasRecovering": ctx.was_recovering,
                            "recoverable": ctx.recoverable,
                        }
                    )

                async def on_subscribing(self, ctx: Any) -> None:
                    agent.record({"event": "subscribing", "channel": channel, "code": ctx.code})

                async def on_unsubscribed(self, ctx: Any) -> None:
                    agent.record({"event": "unsubscribed", "channel": channel, "code": ctx.code})

                async def on_publication(self, ctx: Any) -> None:
                    agent.record(
                        {
                            "event": "publication",
                            "channel": channel,
                            "data": ctx.pub.data,
                            "offset": ctx.pub.offset,
                        }
                    )

            sub = self.client.new_subscription(
                channel, events=SubEvents(), min_resubscribe_delay=0.05
            )
            self.subs[channel] = sub
            await sub.subscribe()
            return None
        if op == "unsubscribe":
            await self.subs[args["channel"]].unsubscribe()
            return None
        if op == "disconnect":
            await self.client.disconnect()
            return None
        if op == "reconnect":
            await self.client.connect()
            return None
        try:
            if op == "publish":
                await self.client.publish(args["channel"], args["data"])
                return None
            if op == "presence_stats":
                stats = await self.client.presence_stats(args["channel"])
                return {"numClients": stats.num_clients, "numUsers": stats.num_users}
            if op == "history":
                found = await self.client.history(args["channel"], limit=args["limit"])
                return {"publications": [{"data": p.data} for p in found.publications]}
        except centrifuge.ReplyError as exc:
            raise SdkError(exc.code, exc.message) from None
        if op == "pause":
            self.client._conn.transport.pause_reading()
            return None
        if op == "resume":
            self.client._conn.transport.resume_reading()
            return None
        raise ValueError(op)

    async def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.disconnect()
