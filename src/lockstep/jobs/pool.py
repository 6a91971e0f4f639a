"""The worker's process pool for CPU-heavy work, started on first use.

Children are started with ``spawn`` (a fresh interpreter, no copy of the worker's event
loop or connections). If a child dies the pool is rebuilt and the affected call raises
``BrokenProcessPool``: the attempt fails and is retried like any other failure.
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
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


class ProcessPool:
    """A lazily started ``ProcessPoolExecutor`` of ``size`` spawned processes."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.size, mp_context=multiprocessing.get_context("spawn")
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
