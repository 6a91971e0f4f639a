"""The differential cache harness on another app than casebook: the budget example.

Any app on lockstep can run ``lockstep.testing.differential``; here its five cached routes
(month summary, provisions, tax, an entry, a statement) answer what they answer uncached
while entries are added, excluded and deleted and statements are mailed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from budget.models import Entry, Statement
from sqlalchemy import select

from lockstep import Settings
from lockstep.testing.differential import Caller, check_cached_routes

from .conftest import create_app, init_schema

MONTHS = ["2026-01", "2026-02", "2026-03"]
CATEGORIES = ["rent", "groceries", "salary", "payroll tax", "travel"]
KINDS = {"rent": "fixed", "groceries": "variable", "salary": "income", "payroll tax": "tax"}


async def test_budget_routes_answer_as_uncached(settings: Settings) -> None:
    app = create_app(settings)
    await init_schema(app.state.db)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as client,
    ):
        households: dict[int, list[int]] = {}
        for name in ("Ann & Bob", "Cy"):
            made = await client.post("/households", json={"name": name, "members": ["a", "b"]})
            body = made.json()
            households[body["id"]] = [m["id"] for m in body["members"]]

        async def add_entries(rng: random.Random) -> str:
            household = rng.choice(list(households))
            rows = []
            for _ in range(rng.randint(1, 4)):
                category = rng.choice(CATEGORIES)
                rows.append(
                    {
                        "member_id": rng.choice(households[household]),
                        "posted_on": f"{rng.choice(MONTHS)}-{rng.randint(1, 28):02d}",
                        "category": category,
                        "expense_type": KINDS.get(category, "variable"),
                        "amount_cents": rng.randint(100, 90_000),
                    }
                )
            response = await client.post(f"/households/{household}/entries", json=rows)
            return f"{len(rows)} entries in {household} -> {response.status_code}"

        async def an_entry(rng: random.Random) -> int | None:
            async with app.state.db.reader() as session:
                ids = list(await session.scalars(select(Entry.id)))
            return rng.choice(ids) if ids else None

        async def exclude_an_entry(rng: random.Random) -> str:
            entry = await an_entry(rng)
            if entry is None:
                return "no entry"
            response = await client.patch(
                f"/entries/{entry}", json={"excluded": rng.random() < 0.5}
            )
            return f"entry {entry} -> {response.status_code}"

        async def delete_an_entry(rng: random.Random) -> str:
            entry = await an_entry(rng)
            if entry is None:
                return "no entry"
            return f"entry {entry} -> {(await client.delete(f'/entries/{entry}')).status_code}"

        async def request_a_statement(rng: random.Random) -> str:
            household = rng.choice(list(households))
            body = {"month": rng.choice(MONTHS), "email": "ann@example.test"}
            response = await client.post(f"/households/{household}/statements", json=body)
            return f"statement of {household} -> {response.status_code}"

        async def values() -> Mapping[str, Sequence[Any]]:
            async with app.state.db.reader() as session:
                entries = list(await session.scalars(select(Entry.id).limit(5)))
                statements = list(await session.scalars(select(Statement.id).limit(5)))
            return {
                "entry_id": [*entries, 987_654],
                "statement_id": [*statements, 987_654],
                "household_id": [*households, 987_654],
                "month": [*MONTHS, "2026-13"],
                "year": [2026, 2025],
            }

        report = await check_cached_routes(
            app,
            callers=[Caller("anyone", {})],
            values=values,
            writes=[add_entries, exclude_an_entry, delete_an_entry, request_a_statement],
            steps=200,
            seed=3,
        )
    report.raise_for_mismatches()
    assert len(report.routes) == 5
    assert report.hits > 0
