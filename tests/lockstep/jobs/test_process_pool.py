"""CPU-heavy work in the worker's process pool: ``process=True`` tasks and
``ctx.run_in_process`` from an async task."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from pathlib import Path

import pytest

from lockstep.db import Database
from lockstep.jobs import Jobs

MODULE = """
import hashlib
import os

from lockstep.jobs import JobContext, TaskRegistry

tasks = TaskRegistry()


@tasks.task(name="cpu.squares", process=True)
def squares(n: int) -> dict[str, int]:
    return {"pid": os.getpid(), "value": sum(i * i for i in range(n))}


def digest(data: str) -> list[object]:
    return [hashlib.sha256(data.encode()).hexdigest(), os.getpid()]


@tasks.task(name="cpu.hash")
async def hash_in_pool(ctx: JobContext, data: str) -> list[object]:
    return await ctx.run_in_process(digest, data)
"""


@pytest.fixture
def cpu_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    (tmp_path / "lockstep_test_cpu_tasks.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned children inherit sys.path
    sys.modules.pop("lockstep_test_cpu_tasks", None)
    return importlib.import_module("lockstep_test_cpu_tasks")


async def test_process_tasks_run_in_other_processes(jobs_db: Database, cpu_module: object) -> None:
    jobs = Jobs(jobs_db, cpu_module.tasks)  # type: ignore[attr-defined]
    async with jobs.worker(process_workers=1, poll_interval=0.05, lease=5):
        squares = await jobs.enqueue("cpu.squares", {"n": 1000})
        hashed = await jobs.enqueue("cpu.hash", {"data": "abc"})
        async with asyncio.timeout(60):
            result = await jobs.result(squares or 0)
            digest, pid = await jobs.result(hashed or 0)
    assert result["value"] == sum(i * i for i in range(1000))
    assert result["pid"] != os.getpid()
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert pid != os.getpid()
