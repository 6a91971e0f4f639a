"""The budget HTTP API: ``create_app(settings)``; ``init_schema(db)`` creates the tables.

Writes go through ``Database.writer()`` (the rollup is maintained in the same transaction,
the change feed invalidates exactly the household's cached figures); read routes are
cached with ETags, so an unchanged dashboard poll is a 304, and an edit sent with a stale
``If-Match`` is a 412. A statement request enqueues its e-mail job in its own transaction;
realtime and offline sync are in ``budget/live.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import FastAPI, Header, Path, Query, Response
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import inspect, select

from budget import live
from budget.figures import Figures, household_rollup
from budget.models import EXPENSE_TYPES, Base, Entry, Household, Member, Outbox, Statement
from budget.rollups import AGGREGATES
from budget.statements import send_statement, tasks
from lockstep import (
    CHANGE_LOG_TABLES,
    JOBS_TABLES,
    REALTIME_TABLES,
    Database,
    JobFailedError,
    Jobs,
    JSONBytesResponse,
    Lockstep,
    NotFoundError,
    Row,
    Settings,
    Tracking,
    cached,
    create_rollups,
    enqueue,
    install_observability,
    install_openapi,
    load_settings,
    precondition,
)
from lockstep.offline import OFFLINE_TABLES

MONTH = r"^\d{4}-(0[1-9]|1[0-2])$"
MAX_ID = 2**31 - 1  # ids beyond what the tables hold are a 422, not a database error
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
ExpenseType = Annotated[str, Field(pattern="^(" + "|".join(EXPENSE_TYPES) + ")$")]


async def init_schema(db: Database) -> None:
    """Create the app's tables, lockstep's own (change log, jobs, realtime history, shape
    log) and the rollup (filled from the entries), if missing. A real app writes these as
    migrations instead (docs/database.md)."""

    def create(connection: Any) -> None:
        if inspect(connection).has_table(Entry.__tablename__):
            return
        rollups = {r.name for r in AGGREGATES}
        tables = [t for t in Base.metadata.sorted_tables if t.name not in rollups]
        Base.metadata.create_all(connection, tables=tables)
        for lockstep_tables in (CHANGE_LOG_TABLES, JOBS_TABLES, REALTIME_TABLES, OFFLINE_TABLES):
            lockstep_tables.ensure(connection)
        create_rollups(connection, *AGGREGATES)  # created and filled from the entries

    async with db.writer_engine.begin() as conn:
        await conn.run_sync(create)


class HouseholdIn(BaseModel):
    name: str = Field(max_length=100)
    members: list[str] = Field(min_length=1, max_length=20)


class EntryIn(BaseModel):
    member_id: int = Field(ge=1, le=MAX_ID)
    posted_on: dt.date
    category: str = Field(max_length=40)
    expense_type: ExpenseType
    amount_cents: int = Field(ge=1, le=10**12)
    excluded: bool = False
    note: str = Field("", max_length=200)


class EntryPatch(BaseModel):
    posted_on: dt.date | None = None
    category: str | None = Field(None, max_length=40)
    expense_type: ExpenseType | None = None
    amount_cents: int | None = Field(None, ge=1, le=10**12)
    excluded: bool | None = None
    note: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def no_nulls(self) -> EntryPatch:
        """Leave a field out to keep it; none of them can be emptied (a 422, not a 500)."""
        nulls = sorted(k for k in self.model_fields_set if getattr(self, k) is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null")
        return self


class StatementIn(BaseModel):
    month: str = Field(pattern=MONTH)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=200)


def _wait_seconds(prefer: str) -> float:
    """``Prefer: wait=N`` (RFC 7240), bounded to 30 seconds; 0 when absent or unreadable."""
    for preference in prefer.split(","):
        name, _, value = preference.strip().partition("=")
        if name.lower() == "wait" and value.isdigit():
            return min(float(value), 30.0)
    return 0.0


def _household(household_id: int) -> int:
    return household_id


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    db = Database(settings)
    AGGREGATES.install(db)
    runtime = Lockstep(
        settings, db, Tracking(Base.metadata, scopes=["household_id"]), namespace="budget"
    )
    figures = Figures(db, runtime.cache)
    jobs = Jobs(db, tasks, settings, registry=runtime.registry)
    realtime = live.realtime(settings, db, runtime.registry)
    offline = live.offline(db, runtime.changes)  # after the runtime: shapes carry its txids

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            runtime.lifespan(),
            offline.lifespan(app),
            realtime.lifespan(app),
            jobs.worker(state=figures),  # one process: the job worker runs in the server
        ):
            yield
        await db.dispose()

    app = FastAPI(
        title="budget",
        default_response_class=JSONBytesResponse,
        lifespan=lifespan,
        docs_url=None,  # its page loads from a CDN, which the security headers' CSP refuses
        redoc_url=None,
    )
    runtime.install(app)
    # The error envelope (an unknown household is a 404, not a 500), request ids, metrics.
    install_observability(app, settings, database=db, registry=runtime.registry)
    realtime.install(app)  # /connection/websocket, /connection/uni_sse
    offline.install(app)  # GET /v1/shape
    install_openapi(app)  # every error documented as the one envelope
    app.state.db, app.state.figures, app.state.jobs = db, figures, jobs

    async def members_of(household_id: int) -> set[int]:
        async with db.reader() as session:
            found = (
                await session.scalars(select(Member.id).where(Member.household_id == household_id))
            ).all()
        if not found:
            raise NotFoundError(f"household {household_id} not found")
        return set(found)

    async def checked(household_id: int, entries: list[EntryIn]) -> list[dict[str, Any]]:
        members = await members_of(household_id)
        unknown = {e.member_id for e in entries} - members
        if unknown:
            raise NotFoundError(f"member(s) {sorted(unknown)} not in household {household_id}")
        return [{"household_id": household_id, **e.model_dump()} for e in entries]

    @app.post("/households", status_code=201)
    async def create_household(body: HouseholdIn) -> JSONBytesResponse:
        async with db.writer() as session:
            household = Household(name=body.name)
            session.add(household)
            await session.flush()
            members = [Member(household_id=household.id, name=n) for n in body.members]
            session.add_all(members)
            await session.flush()
            out = {"id": household.id, "members": [{"id": m.id, "name": m.name} for m in members]}
        return JSONBytesResponse(out, status_code=201)

    @app.post("/households/{household_id}/entries", status_code=201)
    async def add_entries(household_id: Id, body: list[EntryIn]) -> JSONBytesResponse:
        """Add entries (one or a whole statement: one transaction, one rollup upsert per
        touched group)."""
        rows = await checked(household_id, body)
        async with db.writer() as session:
            # ORM objects, so every row is written with its key: offline clients get each
            # one (a keyless INSERT would make them refetch the whole shape).
            entries = [Entry(**row) for row in rows]
            session.add_all(entries)
            await session.flush()
        return JSONBytesResponse({"ids": [e.id for e in entries]}, status_code=201)

    async def owned(session: Any, entry_id: int) -> Entry:
        entry = await session.get(Entry, entry_id)
        if entry is None:
            raise NotFoundError(f"entry {entry_id} not found")
        return entry  # type: ignore[no-any-return]

    def entry_out(entry: Entry) -> dict[str, Any]:
        return {c.key: getattr(entry, c.key) for c in Entry.__table__.columns}

    @app.get("/entries/{entry_id}")
    @cached(name="budget.entry", depends=lambda entry_id: [Row("entries", entry_id)], public=True)
    async def get_entry(entry_id: Id) -> JSONBytesResponse:
        async with db.reader() as session:
            return JSONBytesResponse(entry_out(await owned(session, entry_id)))

    @app.patch("/entries/{entry_id}")
    @precondition(get_entry)  # If-Match: compared with GET's ETag inside the transaction
    async def edit_entry(entry_id: Id, body: EntryPatch) -> JSONBytesResponse:
        async with db.writer() as session:
            entry = await owned(session, entry_id)
            for name, value in body.model_dump(exclude_unset=True).items():
                setattr(entry, name, value)
        return JSONBytesResponse(entry_out(entry))

    @app.delete("/entries/{entry_id}", status_code=204)
    @precondition(get_entry)
    async def delete_entry(entry_id: Id) -> Response:
        async with db.writer() as session:
            await session.delete(await owned(session, entry_id))
        return Response(status_code=204)

    def depends(household_id: int) -> list[Any]:
        return [Row("households", household_id), *household_rollup(household_id)]

    @app.get("/households/{household_id}/summary")
    @cached(name="budget.summary", depends=depends, vary=_household)
    async def summary(
        household_id: Id, month: Annotated[str, Query(pattern=MONTH)]
    ) -> JSONBytesResponse:
        await members_of(household_id)
        return JSONBytesResponse(asdict(await figures.summary(household_id, month)))

    @app.get("/households/{household_id}/provisions")
    @cached(name="budget.provisions", depends=depends, vary=_household)
    async def provisions(
        household_id: Id, month: Annotated[str, Query(pattern=MONTH)]
    ) -> JSONBytesResponse:
        await members_of(household_id)
        return JSONBytesResponse(asdict(await figures.provisions(household_id, month)))

    @app.get("/households/{household_id}/tax")
    @cached(name="budget.tax", depends=depends, vary=_household)
    async def tax(
        household_id: Id, year: Annotated[int, Query(ge=1900, le=2999)]
    ) -> JSONBytesResponse:
        await members_of(household_id)
        return JSONBytesResponse(asdict(await figures.tax(household_id, year)))

    @app.post("/households/{household_id}/statements", status_code=202)
    async def request_statement(
        household_id: Id, body: StatementIn, prefer: Annotated[str, Header()] = ""
    ) -> JSONBytesResponse:
        """Mail the month's summary: the statement and its job commit together, or neither.
        With ``Prefer: wait=N`` (seconds, at most 30) the answer waits for the job."""
        await members_of(household_id)
        async with db.writer() as session:
            statement = Statement(household_id=household_id, month=body.month, email=body.email)
            session.add(statement)
            await session.flush()
            job_id = await enqueue(session, send_statement, {"statement_id": statement.id})
        if (wait := _wait_seconds(prefer)) and job_id is not None:
            with contextlib.suppress(TimeoutError, JobFailedError):
                async with asyncio.timeout(wait):
                    await jobs.result(job_id)
        async with db.reader() as session:
            status = await session.scalar(
                select(Statement.status).where(Statement.id == statement.id)
            )
        out = {"id": statement.id, "job_id": job_id, "status": status}
        return JSONBytesResponse(out, status_code=201 if status == "sent" else 202)

    @app.get("/statements/{statement_id}")
    @cached(
        name="budget.statement",
        depends=lambda statement_id: [Row("statements", statement_id)],
        public=True,
    )
    async def get_statement(statement_id: Id) -> JSONBytesResponse:
        async with db.reader() as session:
            statement = await session.get(Statement, statement_id)
            if statement is None:
                raise NotFoundError(f"statement {statement_id} not found")
            mail = await session.scalar(select(Outbox).where(Outbox.statement_id == statement_id))
        out = {"id": statement.id, "month": statement.month, "status": statement.status}
        if mail is not None:
            out["email"] = {"to": mail.to_address, "subject": mail.subject, "body": mail.body}
        return JSONBytesResponse(out)

    return app
