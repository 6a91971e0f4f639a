"""The budget example (``examples/budget``), on each backend, through its HTTP API."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from lockstep import Settings

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "budget"
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

from budget.app import create_app, init_schema  # noqa: E402


@pytest.fixture
async def budget(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    await init_schema(app.state.db)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://budget.test"
        ) as client,
    ):
        yield client
