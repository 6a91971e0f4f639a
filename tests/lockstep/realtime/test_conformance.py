"""The real SDKs against lockstep's realtime server: centrifuge-js (5.0 and the latest 5.x, in
Node 20) and centrifuge-python, each in embedded mode (one uvicorn process on SQLite) and in
scale-out mode (two uvicorn processes on PostgreSQL sharing a Redis; writes go through
process A, the client is on process B). Requirements 1-4 of realtime-offline.md."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
import websockets

from .agents import Agent, SdkError, event, publication
from .conftest import Deployment

MakeAgent = Callable[[], Awaitable[Agent]]

_names = itertools.count(1)


def room(tenant: str = "a") -> str:
    return f"{tenant}-{time.time_ns() % 10**9}-{next(_names)}"


async def connected(make_agent: MakeAgent, deployment: Deployment, tenant: str = "a") -> Agent:
    agent = await make_agent()
    user = f"u{next(_names)}"
    await agent.call(
        "connect",
        url=deployment.b.ws,
        token=deployment.token(tenant, user),
        tokenUrl=deployment.token_url(tenant, user),
    )
    await agent.next(event("connected"))
    return agent


async def subscribed(agent: Agent, channel: str) -> dict[str, Any]:
    await agent.call("subscribe", channel=channel)
    return await agent.next(event("subscribed", channel))


async def test_connect_subscribe_and_receive_a_commit_of_the_other_process(
    deployment: Deployment, make_agent: MakeAgent
) -> None:
    agent = await connected(make_agent, deployment)
    name = room()
    found = await subscribed(agent, f"room:{name}")
    assert found["recoverable"] is True
    await deployment.post("/notes", via=deployment.a, room=name, body="hello")
    pub = await agent.next(publication(f"room:{name}"))
    assert pub["data"]["body"] == "hello"
    assert pub["offset"] == 1
    # Every note is also broadcast from the table write to its tenant's feed.
    await subscribed(agent, "feed:a")
    await deployment.post("/notes", via=deployment.a, room=name, body="again")
    feed = await agent.next(publication("feed:a"))
    assert feed["data"]["op"] == "insert"
    assert feed["data"]["body"] == "again"
    stats = await agent.call("presence_stats", channel=f"room:{name}")
    assert stats["numClients"] == 1
    assert stats["numUsers"] == 1
    with pytest.raises(SdkError) as refused:
        await agent.call("publish", channel=f"room:{name}", data={"x": 1})
    assert refused.value.code == 103
    history = await agent.call("history", channel=f"room:{name}", limit=10)
    assert [p["data"]["body"] for p in history["publications"]] == ["hello", "again"]


async def test_server_pings_are_answered(deployment: Deployment, make_agent: MakeAgent) -> None:
    agent = await connected(make_agent, deployment)
    if agent.name == "centrifuge-python":
        pytest.skip("the Python SDK does not expose its socket's frames")
    # Pings every second, closed after 3 s without a pong: five answered pings prove it.
    await agent.collect(event("ping"), 5)
    closed = [e for e in agent.seen if e.get("event") in ("connecting", "disconnected")]
    assert [e["code"] for e in closed] == [0]  # only the first "connect called"


async def test_recovers_exactly_what_it_missed(
    deployment: Deployment, make_agent: MakeAgent
) -> None:
    agent = await connected(make_agent, deployment)
    name = room()
    await subscribed(agent, f"room:{name}")
    await deployment.post("/notes", room=name, body="first")
    await agent.next(publication(f"room:{name}"))
    await agent.call("disconnect")
    await agent.next(event("disconnected"))
    await deployment.post("/notes", via=deployment.a, room=name, body="m", n=50)
    await deployment.post("/rollback", room=name)  # published, rolled back: never seen
    await agent.call("reconnect")
    again = await agent.next(event("subscribed", f"room:{name}"))
    assert again["wasRecovering"] is True
    assert again["recovered"] is True
    missed = await agent.collect(publication(f"room:{name}"), 50)
    assert [p["data"]["body"] for p in missed] == [f"m{i}" for i in range(50)]
    assert [p["offset"] for p in missed] == list(range(2, 52))
    await deployment.post("/notes", room=name, body="live")
    live = await agent.next(publication(f"room:{name}"))
    assert (live["data"]["body"], live["offset"]) == ("live", 52)


async def test_told_it_cannot_recover_when_history_is_gone(
    deployment: Deployment, make_agent: MakeAgent
) -> None:
    agent = await connected(make_agent, deployment)
    name = room()
    await subscribed(agent, f"room:{name}")
    await agent.call("disconnect")
    await agent.next(event("disconnected"))
    # 120 missed, 100 kept (LOCKSTEP_REALTIME_HISTORY_SIZE): the first 20 are gone.
    await deployment.post("/notes", room=name, body="m", n=120)
    await deployment.post("/trim")
    await agent.call("reconnect")
    again = await agent.next(event("subscribed", f"room:{name}"))
    assert again["wasRecovering"] is True
    assert again["recovered"] is False
    assert agent.since_cursor(publication(f"room:{name}")) == []


async def test_another_tenant_can_neither_subscribe_nor_receive(
    deployment: Deployment, make_agent: MakeAgent
) -> None:
    intruder = await connected(make_agent, deployment, tenant="b")
    theirs = room("a")
    await intruder.call("subscribe", channel=f"room:{theirs}")
    refused = await intruder.next(event("unsubscribed", f"room:{theirs}"))
    assert refused["code"] == 103
    await intruder.call("subscribe", channel="feed:a")
    assert (await intruder.next(event("unsubscribed", "feed:a")))["code"] == 103
    await intruder.call("subscribe", channel="user:someone-else")
    assert (await intruder.next(event("unsubscribed", "user:someone-else")))["code"] == 103
    await subscribed(intruder, "feed:b")
    await deployment.post("/notes", room=theirs, body="secret")
    await deployment.post("/notes", room=room("b"), body="own")
    own = await intruder.next(publication("feed:b"))
    assert own["data"]["body"] == "own"
    leaked = [e for e in intruder.seen if "secret" in orjson.dumps(e).decode()]
    assert leaked == []


async def test_an_expiring_token_is_refreshed(
    deployment: Deployment, make_agent: MakeAgent
) -> None:
    agent = await make_agent()
    await agent.call(
        "connect",
        url=deployment.b.ws,
        token=deployment.token("a", "refresher", ttl=1.5),
        tokenUrl=deployment.token_url("a", "refresher"),
    )
    await agent.next(event("connected"))
    await agent.next(event("get_token"))  # the SDK refreshes when the ttl runs out
    name = room()
    await subscribed(agent, f"room:{name}")
    await deployment.post("/notes", room=name, body="after refresh")
    assert (await agent.next(publication(f"room:{name}")))["data"]["body"] == "after refresh"
    assert not [e for e in agent.seen if e.get("event") in ("connecting", "disconnected")][1:]


async def test_an_expired_token_gets_109_and_the_sdk_fetches_a_new_one(
    deployment: Deployment, make_agent: MakeAgent
) -> None:
    agent = await make_agent()
    await agent.call(
        "connect",
        url=deployment.b.ws,
        token=deployment.token("a", "late", ttl=-60),
        tokenUrl=deployment.token_url("a", "late"),
    )
    await agent.next(event("get_token"))
    await agent.next(event("connected"))


async def test_a_slow_consumer_is_disconnected_with_3008(
    deployment: Deployment, make_agent: MakeAgent
) -> None:
    agent = await connected(make_agent, deployment)
    name = room()
    await subscribed(agent, f"live:{name}")
    await agent.call("pause")
    async with httpx.AsyncClient(base_url=deployment.b.base) as http:
        # At most 100 x 20 x 50 KB: loopback's socket buffers (up to 32 MB received here)
        # fill first, then the server's 256 KB send buffer.
        for _ in range(100):
            await deployment.post("/blob", via=deployment.b, room=name, n=20, size=50_000)
            if (await http.get("/stats")).json()["connections"] == 0:
                break
        assert (await http.get("/stats")).json()["connections"] == 0
    await agent.call("resume")
    closed = await agent.next(
        lambda e: e.get("event") in ("connecting", "disconnected") and e.get("code") == 3008
    )
    assert closed["code"] == 3008


async def test_volatile_channels_deliver_live_without_offsets(
    deployment: Deployment, make_agent: MakeAgent
) -> None:
    agent = await connected(make_agent, deployment)
    found = await subscribed(agent, "live:a")
    assert not found.get("recovered")
    await deployment.post("/volatile", via=deployment.a, tenant="a", value=7)
    pub = await agent.next(publication("live:a"))
    assert pub["data"] == {"value": 7}
    assert not pub.get("offset")


async def test_redis_killed_and_restarted_clients_recover(
    scaled: Deployment, make_agent: MakeAgent
) -> None:
    assert scaled.redis is not None
    agent = await connected(make_agent, scaled)
    name = room()
    await subscribed(agent, f"room:{name}")
    await subscribed(agent, "live:a")
    await scaled.post("/notes", via=scaled.a, room=name, body="before")
    await agent.next(publication(f"room:{name}"))
    scaled.redis.kill()
    try:
        await scaled.post("/notes", via=scaled.a, room=name, body="down", n=5)
    finally:
        scaled.redis.start()
    await scaled.post("/notes", via=scaled.a, room=name, body="back")
    got = await agent.collect(publication(f"room:{name}"), 6)
    assert [p["data"]["body"] for p in got] == [f"down{i}" for i in range(5)] + ["back"]
    assert [p["offset"] for p in got] == list(range(2, 8))
    # The volatile channel had nothing to recover from: its subscription was renewed.
    await agent.next(event("subscribed", "live:a"))
    await scaled.post("/volatile", via=scaled.a, tenant="a", value=1)
    assert (await agent.next(publication("live:a")))["data"] == {"value": 1}


# -- below the SDKs: the wire itself ------------------------------------------------------------


async def test_batched_frames_unknown_fields_and_methods(deployment: Deployment) -> None:
    token = deployment.token("a", "raw")
    name = room()
    async with websockets.connect(deployment.b.ws) as ws:
        frame = b"\n".join(
            orjson.dumps(c)
            for c in [
                {"id": 1, "connect": {"token": token, "flag": 7, "future": {"x": 1}}, "new": 2},
                {"id": 2, "subscribe": {"channel": f"room:{name}", "flag": 1, "tf": None}},
                {"id": 3, "teleport": {"where": "mars"}},
            ]
        )
        await ws.send(frame.decode())
        replies: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            while len(replies) < 3:
                replies += [orjson.loads(line) for line in str(await ws.recv()).split("\n")]
        by_id = {r.get("id"): r for r in replies}
        assert "connect" in by_id[1]
        assert by_id[1]["connect"]["pong"] is True
        assert by_id[2]["subscribe"]["recoverable"] is True
        assert by_id[3]["error"]["code"] == 104


async def test_an_unrecoverable_position_is_112_when_the_client_asks(
    deployment: Deployment,
) -> None:
    """centrifuge-js with ``getState`` sets the reject flag: 112 instead of recovered=false."""
    name = room()
    await deployment.post("/notes", room=name, body="x", n=3)
    async with websockets.connect(deployment.b.ws) as ws:
        connect = {"id": 1, "connect": {"token": deployment.token("a", "strict")}}
        stale = {"channel": f"room:{name}", "recover": True, "offset": 1, "epoch": "gone"}
        frames = [connect, {"id": 2, "subscribe": {**stale, "flag": 3}}]
        await ws.send(b"\n".join(orjson.dumps(f) for f in frames).decode())
        replies: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            while len(replies) < 2:
                replies += [orjson.loads(line) for line in str(await ws.recv()).split("\n")]
        by_id = {r.get("id"): r for r in replies}
        assert by_id[2]["error"]["code"] == 112
        # Without the flag the same position is answered recovered=false, at the top.
        await ws.send(orjson.dumps({"id": 3, "subscribe": stale}).decode())
        async with asyncio.timeout(10):
            answer = orjson.loads(str(await ws.recv()))
        assert answer["subscribe"]["recovered"] is False
        assert answer["subscribe"]["offset"] == 3


async def test_commands_before_connect_and_bad_frames_close_with_3501(
    deployment: Deployment,
) -> None:
    for frame in ('{"id":1,"subscribe":{"channel":"room:a-1"}}', "not json"):
        async with websockets.connect(deployment.b.ws) as ws:
            await ws.send(frame)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                async with asyncio.timeout(10):
                    await ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 3501


async def test_uni_sse_has_the_same_stream(deployment: Deployment) -> None:
    name = room()
    channel = f"room:{name}"
    token = deployment.token("a", "sse")
    async with httpx.AsyncClient(base_url=deployment.b.base, timeout=30) as http:
        refused = await http.get(
            "/connection/uni_sse", params={"cf_connect": orjson.dumps({"token": token}).decode()}
        )
        assert refused.status_code == 400
        assert "Authorization" in refused.text
        headers = {"Authorization": f"Bearer {token}"}
        body = orjson.dumps({"subs": {channel: {}}})
        async with http.stream("POST", "/connection/uni_sse", content=body, headers=headers) as s:
            events = _sse_events(s)
            first = await anext(events)
            assert first["connect"]["subs"][channel]["recoverable"] is True
            await deployment.post("/notes", via=deployment.a, room=name, body="one")
            pub = await _next_pub(events, channel)
            epoch = first["connect"]["subs"][channel]["epoch"]
        await deployment.post("/notes", via=deployment.a, room=name, body="m", n=3)
        position = {"recover": True, "offset": pub["offset"], "epoch": epoch}
        body = orjson.dumps({"subs": {channel: position}})
        async with http.stream("POST", "/connection/uni_sse", content=body, headers=headers) as s:
            first = await anext(_sse_events(s))
            sub = first["connect"]["subs"][channel]
            assert sub["recovered"] is True
            assert [p["data"]["body"] for p in sub["publications"]] == ["m0", "m1", "m2"]


async def _sse_events(stream: httpx.Response) -> Any:
    async for line in stream.aiter_lines():
        if line.startswith("data: "):
            yield orjson.loads(line[6:])


async def _next_pub(events: Any, channel: str) -> dict[str, Any]:
    async with asyncio.timeout(15):
        async for item in events:
            if item.get("channel") == channel and "pub" in item:
                return dict(item["pub"])
    raise AssertionError("no publication")
