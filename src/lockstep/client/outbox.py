"""``Outbox``: mutations made offline, kept in a SQLite file, pushed in order when online.

    outbox = Outbox("edits.db")                      # one client id per file, kept forever
    await outbox.add("case.update", {"case_id": 7, "title": "x"}, base_version=3)
    report = await outbox.flush(client)              # POST /sync/push, as far as it can

Each mutation gets the next id of the file's client id when it is added, so the order of
``add`` is the order the server applies them in. ``flush`` pushes what is pending, in
batches: applied (or already applied: a lost response) leaves the outbox with its
``txid``; rejected or conflicting mutations move to the dead letters with their error (the
app shows them); a retryable failure or no network keeps them for the next ``flush``. A
push is idempotent, so a flush interrupted anywhere is safe to repeat.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lockstep.client.client import Client

PUSH_PATH = "/sync/push"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    mutation_id INTEGER PRIMARY KEY, name TEXT NOT NULL, args TEXT NOT NULL,
    base_version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    mutation_id INTEGER PRIMARY KEY, name TEXT NOT NULL, args TEXT NOT NULL,
    status TEXT NOT NULL, error TEXT NOT NULL
);
"""


@dataclass(slots=True)
class FlushReport:
    """What one ``flush`` did: ids applied (with their txids), dead-lettered, still pending."""

    applied: dict[int, int | None] = field(default_factory=dict)
    dead: list[int] = field(default_factory=list)
    pending: int = 0
    error: str | None = None


class Outbox:
    """A durable queue of one client's mutations (see the module docs)."""

    def __init__(self, path: str | Path, *, batch: int = 50) -> None:
        self.path = str(path)
        self.batch = batch
        self._lock = asyncio.Lock()
        with self._connect() as db:
            db.executescript(_SCHEMA)
            db.execute(
                "INSERT OR IGNORE INTO outbox_meta VALUES ('client_id', ?), ('next_id', '1')",
                (f"py-{uuid.uuid4().hex}",),
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    @property
    def client_id(self) -> str:
        with self._connect() as db:
            return str(
                db.execute("SELECT value FROM outbox_meta WHERE name='client_id'").fetchone()[0]
            )

    async def add(self, name: str, args: dict[str, Any], base_version: Any = None) -> int:
        """Queue a mutation; returns its id."""

        def add() -> int:
            with self._connect() as db:
                db.execute("BEGIN IMMEDIATE")
                (next_id,) = db.execute(
                    "SELECT value FROM outbox_meta WHERE name='next_id'"
                ).fetchone()
                mutation_id = int(next_id)
                db.execute(
                    "INSERT INTO outbox VALUES (?, ?, ?, ?)",
                    (mutation_id, name, json.dumps(args), json.dumps(base_version)),
                )
                db.execute(
                    "UPDATE outbox_meta SET value=? WHERE name='next_id'", (str(mutation_id + 1),)
                )
                return mutation_id

        return await asyncio.to_thread(add)

    async def pending(self) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            with self._connect() as db:
                rows = db.execute("SELECT * FROM outbox ORDER BY mutation_id").fetchall()
            return [
                {
                    "mutation_id": r[0],
                    "name": r[1],
                    "args": json.loads(r[2]),
                    "base_version": json.loads(r[3]),
                }
                for r in rows
            ]

        return await asyncio.to_thread(read)

    async def dead_letters(self) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            with self._connect() as db:
                rows = db.execute("SELECT * FROM dead_letters ORDER BY mutation_id").fetchall()
            return [
                {
                    "mutation_id": r[0],
                    "name": r[1],
                    "args": json.loads(r[2]),
                    "status": r[3],
                    "error": json.loads(r[4]),
                }
                for r in rows
            ]

        return await asyncio.to_thread(read)

    async def flush(self, client: Client) -> FlushReport:
        """Push everything pending, in order, as far as the server and the network allow."""
        report = FlushReport()
        async with self._lock:
            while True:
                pending = (await self.pending())[: self.batch]
                if not pending:
                    return report
                try:
                    response = await client.post(
                        PUSH_PATH,
                        json={"client_id": self.client_id, "mutations": pending},
                        idempotent=True,
                    )
                except httpx.TransportError as exc:
                    report.error, report.pending = f"offline: {type(exc).__name__}", len(pending)
                    return report
                if response.status_code == 409 and _code(response) == "mutation_gap":
                    # Applied before a response was lost: everything below `expected` is done.
                    expected = int(response.json()["error"]["details"]["expected"])
                    await self._remove(
                        [m["mutation_id"] for m in pending if m["mutation_id"] < expected]
                    )
                    if pending[0]["mutation_id"] >= expected:
                        report.error = "the server expects an id this outbox no longer has"
                        return report
                    continue
                if response.status_code != 200:
                    report.error = _code(response) or f"http {response.status_code}"
                    report.pending = len(await self.pending())
                    return report
                stop = await self._settle(response.json()["results"], pending, report)
                if stop:
                    report.pending = len(await self.pending())
                    return report

    async def _settle(
        self, results: list[dict[str, Any]], sent: list[dict[str, Any]], report: FlushReport
    ) -> bool:
        by_id = {m["mutation_id"]: m for m in sent}
        done: list[int] = []
        dead: list[tuple[dict[str, Any], dict[str, Any]]] = []
        stop = False
        for result in results:
            if result["status"] == "applied":
                done.append(result["mutation_id"])
                report.applied[result["mutation_id"]] = result.get("txid")
            elif result["status"] in ("rejected", "conflict"):
                dead.append((by_id[result["mutation_id"]], result))
            else:  # failed, retryable: keep it and stop here
                report.error = result["error"]["code"]
                stop = True
                break
        await self._remove(done, dead)
        report.dead.extend(m["mutation_id"] for m, _ in dead)
        return stop or len(results) < len(sent)

    async def _remove(
        self, ids: list[int], dead: list[tuple[dict[str, Any], dict[str, Any]]] | None = None
    ) -> None:
        def remove() -> None:
            with self._connect() as db:
                for mutation, result in dead or []:
                    db.execute(
                        "INSERT OR REPLACE INTO dead_letters VALUES (?, ?, ?, ?, ?)",
                        (
                            mutation["mutation_id"],
                            mutation["name"],
                            json.dumps(mutation["args"]),
                            result["status"],
                            json.dumps(result["error"]),
                        ),
                    )
                gone = ids + [m["mutation_id"] for m, _ in dead or []]
                db.executemany("DELETE FROM outbox WHERE mutation_id=?", [(i,) for i in gone])

        await asyncio.to_thread(remove)


def _code(response: httpx.Response) -> str | None:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None
