"""The worker's process pool for CPU-heavy work, started on first use.

Children are started with ``spawn`` (a fresh interpreter, no copy of the worker's event
loop or connections). If a child dies the pool is rebuilt and the affected call raises
``BrokenProcessPool``: the attempt fails and is retried like any other failure.

Children die with their worker, however it ends: a worker killed with SIGKILL runs no
cleanup, and its children (~100 MB each with a PDF library loaded) would otherwise live on.
On Linux each child asks the kernel for SIGKILL when its parent dies
(``PR_SET_PDEATHSIG``); everywhere, a watchdog thread in the child exits once its parent
is gone (within a second).
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

R = TypeVar("R")


def call_by_reference(module: str, qualname: str, kwargs: Mapping[str, Any]) -> Any:
    """Import ``module``, find ``qualname`` and call it with ``kwargs`` (in the child).

    A registered :class:`Task` replaces its function under the module's name, so pickling
    the function itself would fail; the child looks it up and unwraps it instead.
    """
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    function = getattr(target, "fn", target)
    return function(**kwargs)


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """The children's initializer: end this process when ``parent`` ends (see the module)."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before we asked
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


class ProcessPool:
    """A lazily started ``ProcessPoolExecutor`` of ``size`` spawned processes."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.size,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=die_with_parent,
                initargs=(os.getpid(),),
            )
        return self._executor

    async def run(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(*args)`` in a child process. Raises whatever it raises, or
        ``BrokenProcessPool`` if the child died (the pool is rebuilt for the next call)."""
        executor = self._pool()
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
        except BrokenProcessPool:
            if self._executor is executor:
                self._executor = None
                executor.shutdown(wait=False, cancel_futures=True)
            raise

    def shutdown(self) -> None:
        """Stop the children (waits for calls in progress)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
