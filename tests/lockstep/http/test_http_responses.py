"""JSONBytesResponse: orjson bytes for the types handlers actually return."""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import PurePosixPath

import httpx
import orjson
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from lockstep.http import JSONBytesResponse

MakeClient = Callable[..., httpx.AsyncClient]


class Status(enum.Enum):
    OPEN = "open"


class Member(BaseModel):
    name: str
    joined: date
    balance: Decimal


@dataclasses.dataclass
class Case:
    id: uuid.UUID
    opened: datetime
    status: Status
    amount: Decimal
    owner: Member
    tags: frozenset[str]


CASE = Case(
    id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
    opened=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    status=Status.OPEN,
    amount=Decimal("1234.10"),
    owner=Member(name="Ana", joined=date(2024, 5, 6), balance=Decimal("0.30")),
    tags=frozenset({"fraud"}),
)
EXPECTED = {
    "id": "12345678-1234-5678-1234-567812345678",
    "opened": "2025-01-02T03:04:05+00:00",
    "status": "open",
    "amount": "1234.10",
    "owner": {"name": "Ana", "joined": "2024-05-06", "balance": "0.30"},
    "tags": ["fraud"],
}


def test_renders_nested_types() -> None:
    response = JSONBytesResponse({"case": CASE, 7: PurePosixPath("/a/b")})
    assert response.media_type == "application/json"
    assert response.headers["content-type"] == "application/json"
    assert orjson.loads(response.body) == {"case": EXPECTED, "7": "/a/b"}


def test_bytes_are_sent_as_already_serialized_json() -> None:
    assert JSONBytesResponse(b'{"cached":true}').body == b'{"cached":true}'


def test_unsupported_values_raise() -> None:
    with pytest.raises(TypeError, match="object"):
        JSONBytesResponse({"x": object()})


async def test_as_return_value_and_response_class(make_client: MakeClient) -> None:
    app = FastAPI(default_response_class=JSONBytesResponse)

    @app.get("/direct")
    async def direct() -> JSONBytesResponse:
        return JSONBytesResponse(CASE, status_code=201, headers={"X-Extra": "1"})

    @app.get("/model", response_model=Member)
    async def model() -> Member:
        return CASE.owner

    client = make_client(app)
    response = await client.get("/direct")
    assert (response.status_code, response.headers["x-extra"]) == (201, "1")
    assert response.json() == EXPECTED
    response = await client.get("/model")
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"name": "Ana", "joined": "2024-05-06", "balance": "0.30"}
