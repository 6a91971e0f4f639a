"""A small application for the CLI tests, found by import path (``--app shop:app``): orders
with a monthly rollup, the change feed, jobs, and an Alembic directory chosen by the test
(``LOCKSTEP_TEST_SHOP_MIGRATIONS``). Nothing of casebook: the CLI works for any app."""

from __future__ import annotations

import datetime as dt
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Date, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lockstep import (
    Aggregates,
    Count,
    Database,
    Jobs,
    Lockstep,
    Rollup,
    Sum,
    TaskRegistry,
    Tracking,
    load_settings,
    month,
)

MIGRATIONS_ENV = "LOCKSTEP_TEST_SHOP_MIGRATIONS"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention={"pk": "pk_%(table_name)s"})


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(Integer)
    placed_on: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20))
    amount_cents: Mapped[int] = mapped_column(BigInteger)


MONTHLY = Rollup(
    "shop_monthly",
    Order,
    keys=["shop_id", month("placed_on")],
    measures=[Count(), Sum("amount_cents", "amount_cents")],
    where={"status": "paid"},
    metadata=Base.metadata,
)
AGGREGATES = Aggregates([MONTHLY])

tasks = TaskRegistry()


@tasks.task(queue="mail")
async def send_receipt(order_id: int) -> None:
    return None


@dataclass
class Shop:
    database: Database
    lockstep: Lockstep
    jobs: Jobs
    aggregates: Aggregates
    migrations: Path | None


def app(**overrides: Any) -> Shop:
    """The factory ``--app shop:app`` names; settings from the environment."""
    settings = load_settings(**overrides)
    database = Database(settings)
    AGGREGATES.install(database)
    runtime = Lockstep(settings, database, Tracking(Base.metadata), namespace="shop")
    jobs = Jobs(database, tasks, settings)
    migrations = os.environ.get(MIGRATIONS_ENV)
    return Shop(database, runtime, jobs, AGGREGATES, Path(migrations) if migrations else None)


ENV_PY = """
from alembic import context

import shop
from lockstep import CHANGE_LOG_TABLES, JOBS_TABLES, table_metadata

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=[shop.Base.metadata, table_metadata(CHANGE_LOG_TABLES, JOBS_TABLES)],
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
"""

TEMPLATE = '''"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
"""

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
'''

FIRST = '''"""orders, and lockstep's tables

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

from lockstep import CHANGE_LOG_TABLES, JOBS_TABLES

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shop_id", sa.Integer(), nullable=False),
        sa.Column("placed_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
    )
    CHANGE_LOG_TABLES.upgrade(op, to=1)
    JOBS_TABLES.upgrade(op, to=1)


def downgrade() -> None:
    JOBS_TABLES.downgrade(op, to=0)
    CHANGE_LOG_TABLES.downgrade(op, to=0)
    op.drop_table("orders")
'''


def write_migrations(directory: Path) -> Path:
    """An Alembic directory with the first migration (no rollup yet: the CLI writes it)."""
    (directory / "versions").mkdir(parents=True)
    (directory / "env.py").write_text(textwrap.dedent(ENV_PY))
    (directory / "script.py.mako").write_text(TEMPLATE)
    (directory / "versions" / "0001_orders.py").write_text(FIRST)
    return directory
