"""The app the realtime conformance tests serve with uvicorn (one process in embedded mode,
two on PostgreSQL + Redis)::

    python -m uvicorn realtime_app:create_app --factory --port PORT     # in this directory

Tokens are ``<tenant>~<user>~<expires unix seconds>`` (a test app: no signature). Channels:

* ``room:<tenant>-<n>``: history; subscribers of the token's tenant only (else 103);
* ``feed:<tenant>``: history, where every note of the tenant is broadcast;
* ``live:<tenant>``: volatile (no history);
* ``user:<id>``: history, the user's own, also subscribed on the server's side at connect.

Routes: ``GET /token`` (``tenant``, ``user``, ``ttl`` seconds), ``POST /notes`` (a note:
broadcast to ``feed:`` and published to ``room:`` in its transaction), ``POST /rollback``
(published, then rolled back), ``POST /volatile``, ``POST /blob`` (``n`` big volatile
publications to ``live:<room>``, for slow consumers: random, so that WebSocket compression
cannot shrink them below what fills the socket buffers), ``POST /trim``, ``GET /stats``.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lockstep import (
    AuthenticationError,
    Database,
    PermissionDeniedError,
    TokenExpiredError,
    load_settings,
)
from lockstep.realtime import Broadcast, ConnectRequest, Credentials, Namespace, Realtime, RowEvent


class Base(DeclarativeBase):
    metadata = MetaData()


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(20))
    room: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(String(200))


async def authenticate(request: ConnectRequest) -> Credentials:
    try:
        tenant, user, expires = request.token.split("~")
        expires_at = float(expires)
    except ValueError:
        raise AuthenticationError("invalid token") from None
    if expires_at < time.time():
        raise TokenExpiredError("token expired")
    return Credentials(
        user=user,
        expires_at=expires_at,
        channels=[f"user:{user}"],
        state={"tenant": tenant, "user": user},
    )


async def same_tenant(credentials: Credentials, channel: str) -> None:
    rest = channel.partition(":")[2]
    if rest.split("-")[0] != credentials.state["tenant"]:
        raise PermissionDeniedError(f"{channel} belongs to another tenant")


async def own_user(credentials: Credentials, channel: str) -> None:
    if channel != f"user:{credentials.user}":
        raise PermissionDeniedError("not your channel")


def note_data(event: RowEvent) -> Any:
    row = event.row or {}
    return {"op": event.op, "id": row.get("id"), "body": row.get("body"), "count": event.count}


def create_app() -> FastAPI:
    settings = load_settings()
    db = Database(settings)
    realtime = Realtime(
        settings,
        db,
        authenticate=authenticate,
        namespaces=[
            Namespace("room", authorize=same_tenant),
            Namespace("feed", authorize=same_tenant, presence=True),
            Namespace("live", authorize=same_tenant, history=False),
            Namespace("user", authorize=own_user),
        ],
        broadcasts=[
            Broadcast(
                Note.__table__,  # type: ignore[arg-type]
                "feed:{tenant}",
                data=note_data,
                columns=["body"],
            )
        ],
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with realtime.lifespan():
            yield
        await db.dispose()

    app = FastAPI(lifespan=lifespan)
    realtime.install(app)
    app.state.realtime = realtime

    @app.post("/notes")
    async def add_notes(room: str, body: str = "x", n: int = 1) -> dict[str, Any]:
        tenant = room.split("-")[0]
        async with db.writer() as session:
            for i in range(n):
                note = Note(tenant=tenant, room=room, body=f"{body}{i}" if n > 1 else body)
                session.add(note)
                await session.flush()
                realtime.publish(session, f"room:{room}", {"note": note.id, "body": note.body})
        return {"ok": True}

    @app.post("/rollback")
    async def rolled_back(room: str) -> dict[str, Any]:
        try:
            async with db.writer() as session:
                realtime.publish(session, f"room:{room}", {"never": True})
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        return {"ok": True}

    @app.post("/volatile")
    async def volatile(tenant: str, value: int) -> dict[str, Any]:
        await realtime.publish_now(f"live:{tenant}", {"value": value})
        return {"ok": True}

    @app.post("/blob")
    async def blob(room: str, n: int, size: int) -> dict[str, Any]:
        for i in range(n):  # volatile: no history written, so it can be big and fast
            pad = base64.b64encode(os.urandom(size * 3 // 4)).decode()
            await realtime.publish_now(f"live:{room}", {"i": i, "pad": pad})
        return {"ok": True}

    @app.post("/trim")
    async def trim() -> dict[str, Any]:
        return {"deleted": await realtime.trim()}

    @app.get("/token")
    async def token(tenant: str, user: str, ttl: float = 3600) -> dict[str, Any]:
        return {"token": f"{tenant}~{user}~{time.time() + ttl:.3f}"}

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return realtime.stats()

    return app
