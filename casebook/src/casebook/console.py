"""What every ``casebook`` subcommand shares: its consoles, its settings, and how a
LockstepError becomes a one-line message and exit status 1."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from casebook.settings import CasebookSettings
from lockstep import LockstepError, load_settings

T = TypeVar("T")

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def settings_for(data_dir: Path | None, **overrides: Any) -> CasebookSettings:
    """Settings from the environment, with ``--data-dir`` (when given) and ``overrides``."""
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    return load_settings(CasebookSettings, **overrides)


def fail(exc: LockstepError) -> typer.Exit:
    """Print ``exc`` for a person and return the exit to raise."""
    err.print(f"[bold red]error:[/] {exc.message}")
    return typer.Exit(1)


def run_command(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; a LockstepError exits with its message and status 1."""
    try:
        return asyncio.run(coro)
    except LockstepError as exc:
        raise fail(exc) from None
