"""Every cached casebook route answers what it answers with caching off, under writes.

Runs lockstep's differential harness (``lockstep.testing.differential``) on both backends,
with the in-process stores and with Redis (mirror, L1 and L2 in play). ``make fuzz`` runs it
much longer (``CASEBOOK_FUZZ_STEPS``, ``CASEBOOK_FUZZ_SEEDS``).
"""

from __future__ import annotations

import os

import pytest
from fastapi import FastAPI

from casebook.settings import CasebookSettings

from .conftest import Login
from .differential import run

STEPS = int(os.environ.get("CASEBOOK_FUZZ_STEPS", "250"))
SEEDS = [int(s) for s in os.environ.get("CASEBOOK_FUZZ_SEEDS", "1").split(",")]


@pytest.fixture(params=["memory", "redis"])
def casebook_settings(
    casebook_settings: CasebookSettings, request: pytest.FixtureRequest
) -> CasebookSettings:
    """The app's settings with the in-process stores, or with the session Redis."""
    if request.param == "memory":
        return casebook_settings
    return casebook_settings.model_copy(update={"redis_url": request.getfixturevalue("redis_url")})


@pytest.mark.parametrize("seed", SEEDS)
async def test_cached_routes_answer_as_uncached(
    casebook_app: FastAPI, login: Login, seed: int
) -> None:
    async with casebook_app.router.lifespan_context(casebook_app):
        report = await run(casebook_app, login, steps=STEPS, seed=seed)
    report.raise_for_mismatches()
    assert report.reads > STEPS // 2
    assert report.hits > 0  # the cache was really in play
    assert report.not_modified > 0
