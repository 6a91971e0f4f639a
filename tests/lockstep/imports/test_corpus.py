"""The corpus of statements as banks and payment apps export them (tests/corpus): each file
reads, as downloaded, to its exact row count, signed total and dates, asking only what its
entry says a person answers once; running balances hold wherever a file has one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lockstep.db import Database
from lockstep.imports import Spool, survey

from .reading import CORPUS, corpus, read

ENTRIES = corpus()


def test_the_corpus_spans_25_institutions_in_6_countries() -> None:
    institutions = {e["institution"].split(" (")[0] for e in ENTRIES}
    assert len(institutions) >= 25, institutions
    assert len({e["country"] for e in ENTRIES}) >= 6
    for entry in ENTRIES:
        assert (CORPUS / entry["file"]).is_file()
        assert entry["source"]
        assert entry["licence"]


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
async def test_a_statement_reads_as_downloaded(
    entry: dict[str, Any], sqlite_url: str, make_database: Callable[..., Database]
) -> None:
    path = CORPUS / entry["file"]
    asked = survey(Spool.of_path(path), full=True)
    assert [q.key for q in asked.questions] == entry.get("asks", [])
    got = await read(make_database(sqlite_url), path, entry["answers"])
    outcome = got.outcome
    assert outcome.committed
    assert (outcome.rows_read, outcome.rows_rejected) == (
        entry["rows"] + entry["no_movement"],
        0,
    ), outcome.rejects[:5]
    moved = [row for row in got.rows if row["amount"]]
    assert len(moved) == entry["rows"]
    assert sum(row["amount"] for row in moved) == entry["total_cents"]
    days = sorted(row["booking_date"].isoformat() for row in moved)
    assert (days[0], days[-1]) == (entry["first"], entry["last"])
    if "account" in entry:
        assert got.found.mapping.account == entry["account"]
    balance = got.balance
    if entry.get("balance_never_agrees"):
        assert balance.never_agrees
    else:
        assert (balance.count, balance.checked) == (0, entry.get("balance_checked", 0))
