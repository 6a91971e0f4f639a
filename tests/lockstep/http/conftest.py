"""Fixtures for the HTTP layer: settings with JSON logs captured in memory, ASGI clients."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from lockstep.settings import Settings, load_settings

MakeClient = Callable[..., httpx.AsyncClient]


@pytest.fixture
def http_settings(tmp_path: Path) -> Settings:
    """Default settings with JSON log lines (so tests can parse them)."""
    return load_settings(data_dir=tmp_path, env="test", log_format="json")


@pytest.fixture
def log_stream() -> io.StringIO:
    """Where ``install_observability(..., log_stream=log_stream)`` writes its log lines."""
    return io.StringIO()


@pytest.fixture
def read_logs(log_stream: io.StringIO) -> Callable[[], list[dict[str, Any]]]:
    """Parse every JSON log line written to ``log_stream`` so far."""

    def read() -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in log_stream.getvalue().splitlines() if line]

    return read


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """``make_client(app, root_path="", raise_app_exceptions=True)``: a client, closed after."""
    clients: list[httpx.AsyncClient] = []

    def make(
        app: FastAPI, root_path: str = "", raise_app_exceptions: bool = True
    ) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(
            app=app, root_path=root_path, raise_app_exceptions=raise_app_exceptions
        )
        client = httpx.AsyncClient(transport=transport, base_url="http://test")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
