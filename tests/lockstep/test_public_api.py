"""The curated public namespace: every exported name resolves, and importing starts nothing."""

from __future__ import annotations

import subprocess
import sys

import lockstep
import lockstep.testing


def test_every_public_name_resolves() -> None:
    for module in (lockstep, lockstep.testing):
        for name in module.__all__:
            assert getattr(module, name) is not None, name
        assert len(module.__all__) == len(set(module.__all__))


def test_the_core_vocabulary_is_public() -> None:
    expected = {
        "Settings",
        "load_settings",
        "Database",
        "upgrade",
        "Changes",
        "Tracking",
        "Cache",
        "Row",
        "Scope",
        "Table",
        "Lockstep",
        "cached",
        "precondition",
        "install_observability",
        "JSONBytesResponse",
        "LockstepError",
        "NotFoundError",
        "CursorExpiredError",
    }
    assert expected <= set(lockstep.__all__)


def test_importing_has_no_side_effects() -> None:
    """No threads, no event loop, no logging handlers, no connections at import time."""
    code = (
        "import logging, threading, lockstep, lockstep.testing;"
        "assert threading.active_count() == 1, threading.enumerate();"
        "assert not logging.getLogger().handlers, logging.getLogger().handlers"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
