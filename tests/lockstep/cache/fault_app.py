"""The "API process" of the Redis fault tests: a small lockstep app that uvicorn serves in a
process of its own (``test_redis_fault_processes.py`` starts two of them)::

    python -m uvicorn fault_app:create_app --factory --port PORT     # in this directory

Configured by ``LOCKSTEP_*`` variables (PostgreSQL and Redis URLs, timeouts). Routes:

* ``GET /notes/{id}``: cached, public (answered before routing while current)
* ``GET /private/notes/{id}``: cached, through FastAPI (a private route without ``identify``)
* ``PUT /notes/{id}?text=...``: a write; its response carries ``Lockstep-Token``
* ``GET /_cache``: what the tests need to know about this process's cache
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import Integer, MetaData, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lockstep import Database, JSONBytesResponse, Lockstep, Row, cached, load_settings
from lockstep.cache import RedisBackend
from lockstep.changes import Tracking

NAMESPACE = "faults"


class Base(DeclarativeBase):
    metadata = MetaData()


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(String(100))


def create_app() -> FastAPI:
    settings = load_settings()
    db = Database(settings)
    runtime = Lockstep(settings, db, Tracking(Base.metadata), namespace=NAMESPACE)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with runtime.lifespan():
            yield
        await db.dispose()

    app = FastAPI(lifespan=lifespan)
    runtime.install(app)

    async def text_of(note_id: int) -> JSONBytesResponse:
        async with db.reader() as s:
            text = await s.scalar(select(Note.text).where(Note.id == note_id))
        return JSONBytesResponse({"id": note_id, "text": text})

    @app.get("/notes/{note_id}")
    @cached(name="note", public=True, depends=lambda note_id: [Row("notes", note_id)])
    async def get_note(note_id: int) -> JSONBytesResponse:
        return await text_of(note_id)

    @app.get("/private/notes/{note_id}")
    @cached(
        name="private_note",
        vary=lambda: "everyone",
        depends=lambda note_id: [Row("notes", note_id)],
    )
    async def get_private_note(note_id: int) -> JSONBytesResponse:
        return await text_of(note_id)

    @app.put("/notes/{note_id}")
    async def put_note(note_id: int, text: str) -> JSONBytesResponse:
        async with db.writer() as s:
            note = await s.get(Note, note_id)
            if note is None:
                s.add(Note(id=note_id, text=text))
            else:
                note.text = text
        return JSONBytesResponse({"id": note_id, "text": text})

    @app.get("/_cache")
    async def cache_state() -> JSONBytesResponse:
        backend = runtime.backend
        assert isinstance(backend, RedisBackend)
        metrics = runtime.metrics
        resets = {
            sample.labels["reason"]: sample.value
            for sample in metrics.resets.collect()[0].samples
            if sample.name.endswith("_total")
        }
        return JSONBytesResponse(
            {
                "live": backend.mirror.live,
                "trusted": backend.mirror.trusted,
                "breaker": backend.breaker.state,
                "received": backend.mirror.received,
                "resets": resets,
                "rejected": metrics.breaker_rejected._value.get(),
            }
        )

    return app
