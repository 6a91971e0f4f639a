"""``Lockstep(..., backend=...)``: a runtime runs on the stores it is given, and on the ones
its settings choose by default."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from lockstep import Lockstep
from lockstep.cache import (
    Cache,
    MemoryStampStore,
    MirroredStampStore,
    RedisBackend,
    Row,
    StoreBackend,
)
from lockstep.changes import Changes, Tracking, ensure_change_log
from lockstep.db import Database

from ..conftest import Base, Folder


@dataclass
class RecordingBackend(StoreBackend):
    """A store that needs background work, recording what the runtime asked of it."""

    calls: list[str] = field(default_factory=list)

    def attach(self, cache: Cache, changes: Changes) -> None:
        self.calls.append("attach")

    async def start(self) -> None:
        self.calls.append("start")

    async def stop(self) -> None:
        self.calls.append("stop")

    async def ping(self) -> None:
        self.calls.append("ping")


async def test_the_runtime_runs_on_the_backend_it_is_given(database: Database) -> None:
    async with database.writer_engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.run_sync(ensure_change_log)
    stamps = MemoryStampStore()
    backend = RecordingBackend(stamps, shared=True)
    runtime = Lockstep(
        database.settings, database, Tracking(Base.metadata), namespace="b", backend=backend
    )
    assert runtime.cache.stamps is stamps
    assert backend.calls == ["attach"]
    async with runtime.lifespan():
        await runtime.ping_redis()
        assert runtime._follower is None  # shared stamps: nothing to follow
        async with database.writer() as s:
            s.add(Folder(id=1, org_id=1, name="one"))

        async def compute() -> str | None:
            async with database.reader() as s:
                return await s.scalar(select(Folder.name).where(Folder.id == 1))

        deps = [Row("folders", 1)]
        assert (await runtime.cache.get_or_compute("f", 1, deps, compute)).status == "miss"
        assert (await runtime.cache.get_or_compute("f", 1, deps, compute)).status == "hit"
        assert len(stamps) > 0  # the runtime's cache used the given store
    assert backend.calls == ["attach", "start", "ping", "stop"]


async def test_a_backend_that_is_not_shared_gets_the_log_follower(database: Database) -> None:
    runtime = Lockstep(
        database.settings,
        database,
        Tracking(Base.metadata),
        backend=StoreBackend(MemoryStampStore()),
    )
    async with runtime.lifespan():
        assert runtime._follower is not None


async def test_settings_choose_the_default_backend(database: Database, redis_url: str) -> None:
    async with database.writer_engine.begin() as conn:
        await conn.run_sync(ensure_change_log)
    memory = Lockstep(database.settings, database, Tracking(Base.metadata))
    assert isinstance(memory.backend, StoreBackend)
    assert isinstance(memory.cache.stamps, MemoryStampStore)
    assert memory.redis is None
    settings = database.settings.model_copy(update={"redis_url": redis_url})
    scaled = Lockstep(settings, database, Tracking(Base.metadata))
    assert isinstance(scaled.backend, RedisBackend)
    assert isinstance(scaled.cache.stamps, MirroredStampStore)
    assert scaled.redis is scaled.backend.redis
    assert scaled.backend.remote.lease == settings.redis_timeout / 2
    async with scaled.lifespan():
        await scaled.ping_redis()
