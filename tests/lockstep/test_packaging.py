"""lockstep is a small core plus extras; casebook is a distribution of its own.

The core (embedded mode: SQLite, in-process cache, jobs, rollups, HTTP layer) must import and
run without any extra installed; asking for Redis or PostgreSQL without theirs is a clear
ConfigurationError naming the extra.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import requires
from pathlib import Path

from packaging.requirements import Requirement

EXTRAS_ONLY = {"redis", "asyncpg", "typer", "rich"}
APP_ONLY = {"uvicorn", "argon2-cffi", "pyjwt", "python-multipart", "fpdf2"}

# Modules an extra (or casebook) brings: made unimportable in the child interpreter.
BLOCKED = ["redis", "asyncpg", "typer", "rich", "click", "uvicorn", "argon2", "jwt", "fpdf"]


def test_the_core_distribution_needs_no_extra_and_nothing_of_the_app() -> None:
    core = {Requirement(r).name for r in requires("lockstep") or [] if "extra ==" not in r}
    assert core, "lockstep's metadata lists no requirements"
    assert not core & (EXTRAS_ONLY | APP_ONLY), core
    extras = {Requirement(r).name for r in requires("lockstep") or [] if "extra ==" in r}
    assert extras >= EXTRAS_ONLY
    assert {Requirement(r).name for r in requires("casebook") or []} >= APP_ONLY


def test_embedded_mode_runs_without_any_extra(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        for name in {BLOCKED!r}:
            sys.modules[name] = None  # an import of it raises ModuleNotFoundError

        import httpx
        from fastapi import FastAPI
        from sqlalchemy import Integer, MetaData, String
        from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

        import lockstep
        from lockstep import JSONBytesResponse, Lockstep, Row, Tracking, cached, load_settings
        from lockstep.changes import ensure_change_log
        from lockstep.exceptions import ConfigurationError
        from lockstep.realtime import Namespace, Realtime

        class Base(DeclarativeBase):
            metadata = MetaData()

        class Note(Base):
            __tablename__ = "notes"
            id: Mapped[int] = mapped_column(Integer, primary_key=True)
            text: Mapped[str] = mapped_column(String(50))

        async def main() -> None:
            settings = load_settings(
                database_url="sqlite+aiosqlite:///{tmp_path}/core.db", env="test"
            )
            db = lockstep.Database(settings)
            runtime = Lockstep(settings, db, Tracking(Base.metadata))
            app = FastAPI()
            runtime.install(app)

            async def nobody(request):
                raise ConfigurationError("unused")

            realtime = Realtime(settings, db, authenticate=nobody, namespaces=[Namespace("n")])
            realtime.install(app)

            @app.get("/notes/{{note_id}}")
            @cached(name="note", depends=lambda note_id: [Row("notes", note_id)], public=True)
            async def note(note_id: int) -> JSONBytesResponse:
                async with db.reader() as s:
                    found = await s.get(Note, note_id)
                return JSONBytesResponse({{"text": found.text if found else None}})

            async with db.writer_engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
                await conn.run_sync(ensure_change_log)
            async with db.writer() as s:
                s.add(Note(id=1, text="one"))
            transport = httpx.ASGITransport(app=app)
            async with runtime.lifespan(), realtime.lifespan(), httpx.AsyncClient(
                transport=transport, base_url="http://t"
            ) as client:
                first = await client.get("/notes/1")
                hit = await client.get("/notes/1")
                assert (first.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
                async with db.writer() as s:
                    (await s.get(Note, 1)).text = "uno"
                assert (await client.get("/notes/1")).json() == {{"text": "uno"}}
            await db.dispose()
            for url, extra in (
                ("postgresql+asyncpg://u@127.0.0.1:1/x", None),
                (None, "redis://127.0.0.1:1/0"),
            ):
                overrides = {{"env": "test"}}
                if url:
                    overrides["database_url"] = url
                else:
                    overrides["database_url"] = "sqlite+aiosqlite:///{tmp_path}/b.db"
                    overrides["redis_url"] = extra
                try:
                    other = load_settings(**overrides)
                    Lockstep(other, lockstep.Database(other), Tracking(Base.metadata))
                except ConfigurationError as exc:
                    print("refused:", exc)
                else:
                    raise AssertionError(f"no ConfigurationError for {{overrides}}")
            print("embedded ok")

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "embedded ok" in result.stdout
    assert "lockstep[postgres]" in result.stdout
    assert "lockstep[redis]" in result.stdout
