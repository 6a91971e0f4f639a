"""A rollup's frozen migration: rendered once, run on SQLite and PostgreSQL, the table equal
to the declaration and the first fill equal to the GROUP BY; nothing of the app imported."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import BigInteger, Boolean, Date, Integer, MetaData, String, TypeDecorator, inspect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lockstep import Aggregates, Count, Max, Min, Rollup, Sum, month, rollup_migration
from lockstep.db import Database


class Cents(TypeDecorator[int]):
    """An app's own type: the migration must store what it stores, not import it."""

    impl = BigInteger
    cache_ok = True


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention={"pk": "pk_%(table_name)s"})


class Sale(Base):
    __tablename__ = "sales"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(Integer)
    sold_on: Mapped[dt.date] = mapped_column(Date)
    label: Mapped[str] = mapped_column(String(40))
    amount: Mapped[int] = mapped_column(Cents)
    void: Mapped[bool] = mapped_column(Boolean, default=False)


# A filter value with a quote, a percent sign and a colon: none may change the frozen SQL.
TRICKY = "50% off :now it's"
BY_MONTH = Rollup(
    "sales_by_month",
    Sale,
    keys=["shop_id", month("sold_on")],
    measures=[Count(), Sum("amount", "total"), Max("amount", "largest"), Min("sold_on", "first")],
    where={"label": TRICKY, "void": False},
    metadata=Base.metadata,
)


def rows() -> list[dict[str, Any]]:
    out = []
    for i in range(1, 121):
        out.append(
            {
                "id": i,
                "shop_id": (i // 7) % 3,
                "sold_on": dt.date(2026, 1 + i % 12, 1 + i % 27),
                "label": TRICKY if i % 4 else "plain",
                "amount": (i * 37) % 500,
                "void": i % 10 == 0,
            }
        )
    return out


def run_rendered(connection: Any, body: tuple[str, ...]) -> None:
    """Execute rendered migration lines the way Alembic would, with ``op`` and ``sa``."""
    code = "def step():\n" + "\n".join("    " + line for line in body) + "\n"
    namespace: dict[str, Any] = {"sa": sa, "op": Operations(MigrationContext.configure(connection))}
    exec(compile(code, "<rendered migration>", "exec"), namespace)  # noqa: S102 - our own rendering
    namespace["step"]()


def test_the_rendered_code_is_self_contained() -> None:
    migration = rollup_migration(BY_MONTH)
    code = "\n".join(migration.upgrade)
    assert "Cents" not in code  # the app's type, frozen as what it stores
    assert "sa.BigInteger()" in code
    assert "name=op.f('pk_sales_by_month')" in code  # the app's naming convention, resolved
    assert "strftime('%Y-%m', sales.sold_on)" in code
    assert "to_char(sales.sold_on, 'YYYY-MM')" in code
    # The quote doubled, the colon escaped (else text() would read ":now" as a parameter).
    assert "50% off \\\\:now it''s" in code
    assert max(len(line) for line in code.splitlines() if '"' in line) <= 100
    assert migration.downgrade == ('op.drop_table("sales_by_month")',)


async def test_the_migration_creates_the_declared_table_filled_with_the_group_by(
    database: Database,
) -> None:
    source = [t for t in Base.metadata.sorted_tables if t.name != BY_MONTH.name]
    async with database.writer_engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all, tables=source)
        await conn.execute(sa.insert(Sale.__table__), rows())
    migration = rollup_migration(BY_MONTH)
    async with database.writer_engine.begin() as conn:
        await conn.run_sync(run_rendered, migration.upgrade)

    [report] = await Aggregates([BY_MONTH]).verify(database)
    assert report.ok, [d.describe() for d in report.discrepancies]
    assert report.groups > 10

    def differences(connection: Any) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with database.writer_engine.connect() as conn:
        assert await conn.run_sync(differences) == []
    async with database.writer_engine.begin() as conn:
        await conn.run_sync(run_rendered, migration.downgrade)
        assert not await conn.run_sync(lambda c: inspect(c).has_table(BY_MONTH.name))
