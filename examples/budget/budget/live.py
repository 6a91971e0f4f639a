"""What open clients hear and what offline clients sync.

* Realtime: every write to a household's entries and statements is published to the
  channel ``household:{id}`` (the Centrifugo client protocol: centrifuge-js,
  centrifuge-python, or a plain SSE request), sent if and only if it commits.
* Offline reads: the ``entries`` table as an Electric shape at ``GET /v1/shape``, which
  ``@electric-sql/client`` keeps in sync (``where=household_id = 1``).

The example has no sign-in: anyone may subscribe to an existing household and sync any
household's entries. An app with users checks the caller in ``authenticate`` and
``household`` (see casebook's ``live.py``) and returns the caller's rows as the shape's
``scope``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from budget.models import Base, Household
from lockstep import Changes, Database, NotFoundError, Settings
from lockstep.offline import Offline, Shape
from lockstep.realtime import (
    Broadcast,
    ConnectRequest,
    Credentials,
    Namespace,
    Realtime,
    RowEvent,
)

TABLES = Base.metadata.tables
CHANNEL = "household:{household_id}"
ENTRY_FIELDS = (
    "id",
    "member_id",
    "posted_on",
    "category",
    "expense_type",
    "amount_cents",
    "excluded",
)
STATEMENT_FIELDS = ("id", "month", "status")


def realtime(settings: Settings, db: Database, registry: CollectorRegistry) -> Realtime:
    async def anyone(request: ConnectRequest) -> Credentials:
        return Credentials(user="")  # no sign-in in this example

    async def household(credentials: Credentials, channel: str) -> None:
        ident = channel.partition(":")[2]
        if ident.isdigit():
            async with db.reader() as session:
                if await session.get(Household, int(ident)) is not None:
                    return
        raise NotFoundError(f"no channel {channel!r}")  # refused: error 103

    def entry(event: RowEvent) -> Any:
        row = event.row or {}
        return {"op": event.op, "entry": {f: row.get(f) for f in ENTRY_FIELDS}}

    def statement(event: RowEvent) -> Any:
        row = event.row or {}
        return {"op": event.op, "statement": {f: row.get(f) for f in STATEMENT_FIELDS}}

    return Realtime(
        settings,
        db,
        authenticate=anyone,
        namespaces=[Namespace("household", authorize=household)],
        broadcasts=[  # every write of these rows, sent to the row's household iff it commits
            Broadcast(TABLES["entries"], CHANNEL, data=entry, columns=ENTRY_FIELDS),
            Broadcast(TABLES["statements"], CHANNEL, data=statement, columns=STATEMENT_FIELDS),
        ],
        registry=registry,
        version="budget",
    )


def offline(db: Database, changes: Changes) -> Offline:
    entries = Shape(TABLES["entries"], columns=[*ENTRY_FIELDS, "household_id"])
    return Offline(db, changes, shapes=[entries])
