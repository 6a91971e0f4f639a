"""The process pool's children die with their worker, even one killed with SIGKILL (which
runs no cleanup): no orphaned ~100 MB processes left behind (issue #13)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

WORKER = textwrap.dedent(
    """
    import asyncio, os, sys
    from lockstep.jobs.pool import ProcessPool

    async def main() -> None:
        pool = ProcessPool(2)
        pids = set()
        while len(pids) < 2:  # both children started
            pids |= set(await asyncio.gather(*(pool.run(os.getpid) for _ in range(8))))
        print(*sorted(pids), flush=True)
        await asyncio.Event().wait()  # until killed

    asyncio.run(main())
    """
)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in "ZX"  # a zombie has ended; only its exit status is left


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_pool_children_die_when_their_worker_is_killed(tmp_path: Path) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    assert worker.stdout is not None
    children = [int(pid) for pid in worker.stdout.readline().split()]
    assert len(children) == 2
    assert all(alive(pid) for pid in children)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    for pid in children:  # wait for each child's exit itself (a pidfd is readable then)
        try:
            handle = os.pidfd_open(pid)
        except ProcessLookupError:
            continue  # already gone
        try:
            ready, _, _ = select.select([handle], [], [], 30)
        finally:
            os.close(handle)
        assert ready, f"pool child {pid} outlived its killed worker"
    assert not any(alive(pid) for pid in children)
