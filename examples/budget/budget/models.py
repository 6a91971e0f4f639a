"""Households, their members and every money line (income and expenses alike).

Amounts are positive integer cents; ``expense_type`` says what the line is: ``income``
(gross pay), ``tax`` (taxes paid), and the spending types ``fixed`` (rent, subscriptions),
``variable`` (groceries) and ``irregular`` (car repairs, yearly insurance: what provisions
smooth out). An ``excluded`` line stays in the ledger but out of every figure.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, Date, ForeignKey, Index, Integer, MetaData, String
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
