"""Households, their members and every money line (income and expenses alike).

Amounts are positive integer cents; ``expense_type`` says what the line is: ``income``
(gross pay), ``tax`` (taxes paid), and the spending types ``fixed`` (rent, subscriptions),
``variable`` (groceries) and ``irregular`` (car repairs, yearly insurance: what provisions
smooth out). An ``excluded`` line stays in the ledger but out of every figure.

A ``Statement`` is a month's summary mailed to someone: requested by a write that also
enqueues the job that renders it into the ``outbox`` (where a mailer would pick it up).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

EXPENSE_TYPES = ("income", "tax", "fixed", "variable", "irregular")
SPENDING = ("fixed", "variable", "irregular")


class Base(DeclarativeBase):
    metadata = MetaData()


class Household(Base):
    __tablename__ = "households"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


class Member(Base):
    __tablename__ = "members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))


class Entry(Base):
    __tablename__ = "entries"
    __table_args__ = (Index("ix_entries_household_posted", "household_id", "posted_on"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    posted_on: Mapped[dt.date] = mapped_column(Date)
    category: Mapped[str] = mapped_column(String(40))
    expense_type: Mapped[str] = mapped_column(String(10))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    excluded: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str] = mapped_column(String(200), default="")


class Statement(Base):
    __tablename__ = "statements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id", ondelete="CASCADE"))
    month: Mapped[str] = mapped_column(String(7))
    email: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10), default="queued")  # queued, sent


class Outbox(Base):
    """E-mails to send: the statement job writes them here, in its own transaction."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    statement_id: Mapped[int] = mapped_column(ForeignKey("statements.id", ondelete="CASCADE"))
    to_address: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
