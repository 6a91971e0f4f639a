"""A ledger schema with two rollups (one filtered, with MIN/MAX), the change feed installed."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pytest
from sqlalchemy import BigInteger, Boolean, Date, ForeignKey, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lockstep.aggregates import Aggregates, Avg, Count, Max, Min, Rollup, Sum, month
from lockstep.changes import Changes, Tracking, ensure_change_log
from lockstep.db import Database
from lockstep.types import ChangeSet


class Base(DeclarativeBase):
    metadata = MetaData()


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(Integer)


class Entry(Base):
    __tablename__ = "entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    day: Mapped[dt.date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(10))
    amount: Mapped[int] = mapped_column(BigInteger)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str] = mapped_column(String(50), default="")


BY_MONTH = Rollup(
    "entries_by_month",
    Entry,
    keys=["org_id", month("day"), "kind"],
    measures=[
        Count(),
        Sum("amount", "total"),
        Avg("amount", "mean"),
        Min("amount", "smallest"),
        Max("amount", "largest"),
        Max("day", "last_day"),
    ],
    where={"hidden": False},
    metadata=Base.metadata,
)
BY_ACCOUNT = Rollup(
    "entries_by_account",
    Entry,
    keys=["org_id", "account_id"],
    measures=[Count(), Sum("amount", "total"), Min("day", "first_day")],
    metadata=Base.metadata,
)
AGGREGATES = Aggregates([BY_MONTH, BY_ACCOUNT])


@dataclass
class Ledger:
    db: Database
    aggregates: Aggregates
    published: list[ChangeSet] = field(repr=False)

    async def assert_consistent(self) -> None:
        for report in await self.aggregates.verify(self.db):
            assert report.ok, [d.describe() for d in report.discrepancies]


async def make_ledger(database: Database) -> Ledger:
    async with database.writer_engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.run_sync(ensure_change_log)
    changes = Changes(database, Tracking(Base.metadata, scopes=["org_id"]))
    AGGREGATES.install(database)
    published: list[ChangeSet] = []

    async def listen(changeset: ChangeSet) -> None:
        published.append(changeset)

    changes.hub.subscribe(listen)
    async with database.writer() as session:
        session.add_all([Account(id=i, org_id=1 + i % 2) for i in range(1, 5)])
    return Ledger(database, AGGREGATES, published)


@pytest.fixture
async def ledger(database: Database) -> Ledger:
    return await make_ledger(database)
