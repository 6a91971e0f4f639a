"""Claims in a limited queue: the queue's concurrency and rate, and each key's, checked
and spent inside one transaction that is serialized across workers (an advisory lock on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite). The choice itself is ``limits.pick``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from lockstep.jobs.backends import JobBackend
from lockstep.jobs.limits import Candidate, KeyLimits, QueueLimits, pick, queue_budget


async def claim_within_limits(
    conn: AsyncConnection,
    b: JobBackend,
    claim_ids: TextClause,
    params: dict[str, Any],
    limits: QueueLimits,
    key_limits: dict[str, KeyLimits],
) -> Sequence[Row[Any]]:
    """Claim up to ``params["limit"]`` jobs of ``params["queue"]`` that the queue's and the
    keys' limits allow, in dequeue order; spends their token buckets. Serialized across
    workers for the rest of ``conn``'s transaction. ``claim_ids`` leases the chosen ids."""
    await b.lock_limits(conn)
    queue = params["queue"]
    paused = await conn.scalar(
        text("SELECT paused FROM lockstep_job_queues WHERE name = :queue"), {"queue": queue}
    )
    if paused:
        return []
    running = 0
    if limits.concurrency is not None:
        running = int(
            await conn.scalar(
                text(
                    "SELECT count(*) FROM lockstep_jobs WHERE state = 'running' AND queue = :queue"
                ),
                {"queue": queue},
            )
            or 0
        )
    buckets = await _buckets(conn, b)
    queue_bucket = f"queue:{queue}"
    tokens = None
    if limits.rate is not None:
        stored = buckets.get(queue_bucket)
        tokens = (
            float(limits.rate.limit) if stored is None else limits.rate.refill(stored[0], stored[1])
        )
    budget = queue_budget(params["limit"], limits, running=running, tokens=tokens)
    if budget <= 0:
        return []
    running_by_key: dict[str, int] = {}
    if key_limits:
        counted = await conn.execute(
            text(
                "SELECT limit_key, count(*) AS n FROM lockstep_jobs "
                "WHERE state = 'running' AND limit_key IS NOT NULL GROUP BY limit_key"
            )
        )
        running_by_key = {row.limit_key: int(row.n) for row in counted}
    candidates = [
        Candidate(row.id, row.task, row.limit_key)
        for row in await conn.execute(
            text(
                "SELECT id, task, limit_key FROM lockstep_jobs "
                "WHERE state = 'queued' AND queue = :queue "
                "ORDER BY priority, run_at, id LIMIT :scan"
            ),
            {"queue": queue, "scan": budget * 4 + 50},
        )
    ]
    key_tokens: dict[str, float] = {}
    for candidate in candidates:
        kl = key_limits.get(candidate.task)
        key = candidate.limit_key
        if key is None or kl is None or kl.rate is None or key in key_tokens:
            continue
        stored = buckets.get(f"key:{key}")
        key_tokens[key] = (
            float(kl.rate.limit) if stored is None else kl.rate.refill(stored[0], stored[1])
        )
    chosen = pick(
        candidates,
        budget=budget,
        key_limits=key_limits.get,
        running_by_key=running_by_key,
        key_tokens=key_tokens,
    )
    if not chosen:
        return []
    rows = (
        await conn.execute(
            claim_ids,
            {
                "ids": [c.id for c in chosen],
                "worker": params["worker"],
                "lease": params["lease"],
            },
        )
    ).all()
    spent: dict[str, float] = {}
    if tokens is not None:
        spent[queue_bucket] = tokens - len(rows)
    for row in rows:
        if row.limit_key in key_tokens:
            name = f"key:{row.limit_key}"
            spent[name] = spent.get(name, key_tokens[row.limit_key]) - 1
    await _save_buckets(conn, b, spent)
    return rows


async def _buckets(conn: AsyncConnection, b: JobBackend) -> dict[str, tuple[float, float]]:
    """Every token bucket: name → (tokens, seconds since it was stored)."""
    result = await conn.execute(
        text(f"SELECT name, tokens, {b.age('updated_at')} AS age FROM lockstep_job_buckets")
    )
    return {row.name: (float(row.tokens), float(row.age)) for row in result}


async def _save_buckets(conn: AsyncConnection, b: JobBackend, tokens: dict[str, float]) -> None:
    if not tokens:
        return
    cte, params = b.rows("v", (("name", "text"), ("tokens", "float8")), sorted(tokens.items()))
    await conn.execute(
        text(f"""
            WITH {cte}
            INSERT INTO lockstep_job_buckets (name, tokens, updated_at)
            SELECT v.name, v.tokens, {b.now} FROM v WHERE TRUE
            ON CONFLICT (name) DO UPDATE
            SET tokens = excluded.tokens, updated_at = excluded.updated_at
        """),
        params,
    )
