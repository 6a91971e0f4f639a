"""Reading a statement through lockstep alone, as an application would (survey, answers,
``ingest`` through a writer), keeping the rows instead of storing them; and the corpus."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lockstep.db import Columns, Database
from lockstep.imports import (
    BalanceCheck,
    ImportOutcome,
    Spool,
    Survey,
    ingest,
    layout,
    statement_schema,
    survey,
)

CORPUS = Path(__file__).parents[2] / "corpus"


def corpus() -> list[dict[str, Any]]:
    with (CORPUS / "corpus.toml").open("rb") as handle:
        return list(tomllib.load(handle)["statement"])


@dataclass
class Read:
    found: Survey
    outcome: ImportOutcome
    rows: list[dict[str, Any]] = field(default_factory=list)
    balance: BalanceCheck = field(default_factory=BalanceCheck)


async def read(db: Database, path: Path, answers: Mapping[str, str] | None = None) -> Read:
    """The rows of ``path`` as lockstep reads them with ``answers``. Raises AssertionError
    when questions are left."""
    spool = Spool.of_path(path)
    found = survey(spool, answers=answers or {}, full=True)
    assert not found.questions, [q.key for q in found.questions]
    mapping = found.mapping
    batches: list[Columns] = []

    async def keep(session: AsyncSession, batch: Columns) -> None:
        batches.append(batch)

    outcome = await ingest(
        db, spool, statement_schema(mapping, line_field="line"), keep, **layout(mapping)
    )
    result = Read(found, outcome)
    for batch in batches:
        result.rows += list(batch.rows())
        if "balance" in mapping.roles:
            result.balance.feed(batch["line"], batch["amount"], batch["balance"])
    return result
