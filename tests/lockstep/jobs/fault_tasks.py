"""Tasks shared by the in-process tests and the worker subprocesses of the fault tests.

``effects`` rows are written inside each job's fenced transaction; it has no unique
constraint on purpose, so a job whose effect happened twice shows up as two rows.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, String, Table, insert

from lockstep.jobs import Backoff, JobContext, TaskRegistry

effects_metadata = MetaData()
effects = Table(
    "effects",
    effects_metadata,
    Column("id", Integer, primary_key=True),
    Column("job_id", Integer, nullable=False),
    Column("label", String(100), nullable=False, default=""),
)

tasks = TaskRegistry(max_attempts=50, backoff=Backoff(base=0.05, cap=0.5))


@tasks.task(name="fault.effect", result_ttl=0)
async def effect(ctx: JobContext, n: int) -> None:
    """A little work, then the effect and the completion in one fenced transaction."""
    await asyncio.sleep(random.uniform(0, 0.02))  # noqa: sleep - the job's own work
    async with ctx.transaction() as session:
        await session.execute(insert(effects).values(job_id=ctx.job_id, label=str(n)))


@tasks.task(name="fault.hang_first")
async def hang_first(ctx: JobContext, marker_dir: str) -> str:
    """Attempt 1 announces itself and then hangs (to be killed); later attempts finish."""
    await asyncio.to_thread(Path(marker_dir, f"started-{ctx.job_id}-{ctx.attempt}").touch)
    if ctx.attempt == 1:
        await asyncio.Event().wait()
    async with ctx.transaction() as session:
        await session.execute(insert(effects).values(job_id=ctx.job_id, label="done"))
    return "finished"
