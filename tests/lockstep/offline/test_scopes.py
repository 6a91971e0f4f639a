"""Sync scopes: declaration checks, binding to the caller, priority order, refusals. Pure:
a scope's answer is computed from the request alone (the binder is the app's)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table
from starlette.requests import Request

from lockstep import AuthenticationError, ConfigurationError, NotFoundError
from lockstep.offline.capture import ShapedTable
from lockstep.offline.scopes import ScopeRegistry, ScopeShape, SyncScope, in_list
from lockstep.offline.shapes import Shape, ShapeDefinition

metadata = MetaData()
cases = Table(
    "cases",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org", Integer),
    Column("owner", Integer),
    Column("status", String(10)),
    Column("secret", String(10)),
)
notes = Table(
    "notes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org", Integer),
    Column("case_id", Integer),
)


def caller(request: Request) -> dict[str, int]:
    user = request.headers.get("x-user")
    if user is None:
        raise AuthenticationError("who?")
    return {"user": int(user), "org": int(request.headers.get("x-org", "1"))}


def tenant(request: Request) -> dict[str, Any]:
    return {"org": caller(request)["org"]}


def definitions() -> dict[str, ShapeDefinition]:
    return {
        "cases": ShapeDefinition(
            Shape(cases, scope=tenant, columns=["owner", "status"]), ShapedTable(cases)
        ),
        "notes": ShapeDefinition(Shape(notes, scope=tenant), ShapedTable(notes)),
    }


def request(**headers: str) -> Request:
    raw = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw})


async def bind(request: Request) -> dict[str, Any]:
    who = caller(request)
    return {**who, "cases": [who["user"] * 10, who["user"] * 10 + 1]}


def my_work() -> SyncScope:
    return SyncScope(
        "my-work",
        bind=bind,
        shapes=[
            ScopeShape(
                "notes",
                where=lambda b: in_list("case_id", b["cases"]),
                params=lambda b: b["cases"],
                priority=5,
            ),
            ScopeShape(
                "cases",
                where="owner = $1 AND status = $2",
                params=lambda b: [b["user"], "open"],
                priority=0,
            ),
            ScopeShape("cases", name="all-cases", priority=5, columns=["status"]),
        ],
        prefetch=lambda b: [f"/api/cases/{i}" for i in b["cases"]],
    )


async def test_shapes_come_in_priority_order_bound_to_the_caller() -> None:
    registry = ScopeRegistry([my_work()], definitions())
    answer = await registry.answer("my-work", request(x_user="7"))
    assert [(s.name, s.priority) for s in answer.shapes] == [
        ("cases", 0),
        ("notes", 5),  # equal priorities keep the declaration's order
        ("all-cases", 5),
    ]
    assert answer.shapes[0].params == {
        "table": "cases",
        "where": "owner = $1 AND status = $2",
        "params": ["7", "open"],
    }
    assert answer.shapes[1].params == {
        "table": "notes",
        "where": "case_id IN ($1, $2)",
        "params": ["70", "71"],
    }
    assert answer.shapes[2].params == {"table": "cases", "columns": "id,status"}
    assert answer.prefetch == ["/api/cases/70", "/api/cases/71"]
    again = await registry.answer("my-work", request(x_user="7"))
    other = await registry.answer("my-work", request(x_user="8"))
    assert again.version == answer.version != other.version


async def test_an_empty_list_binds_to_false_and_values_are_text() -> None:
    assert in_list("case_id", []) == "FALSE"
    assert in_list("case_id", [1, 2, 3], start=2) == "case_id IN ($2, $3, $4)"
    with pytest.raises(ConfigurationError):
        in_list("case_id); DROP", [1])
    scope = SyncScope("s", shapes=[ScopeShape("notes", where=lambda b: in_list("case_id", []))])
    answer = await ScopeRegistry([scope], definitions()).answer("s", request(x_user="1"))
    assert answer.shapes[0].params == {"table": "notes", "where": "FALSE"}


async def test_refusals_and_unknown_names() -> None:
    registry = ScopeRegistry([my_work()], definitions())
    with pytest.raises(AuthenticationError):  # the binder's (and every shape's) refusal
        await registry.answer("my-work", request())
    public = SyncScope("open", shapes=[ScopeShape("notes")])
    registry = ScopeRegistry([public], definitions())
    with pytest.raises(AuthenticationError):  # no binder: the shapes' scopes still refuse
        await registry.answer("open", request())
    for hostile in ["nope", "OPEN", "open/..", "../open", "open\x00", "", "o" * 500, "ópen"]:
        with pytest.raises(NotFoundError) as refused:
            registry.get(hostile)
        assert refused.value.message == "no such sync scope"  # the name is never echoed


def test_declarations_are_checked() -> None:
    shapes = definitions()
    bad: list[SyncScope] = [
        SyncScope("Bad Name", shapes=[ScopeShape("notes")]),
        SyncScope("s", shapes=[]),
        SyncScope("s", shapes=[ScopeShape("users")]),  # not a declared shape
        SyncScope("s", shapes=[ScopeShape("notes"), ScopeShape("notes")]),
        SyncScope("s", shapes=[ScopeShape("cases", columns=["secret"])]),  # not declared
    ]
    for scope in bad:
        with pytest.raises(ConfigurationError):
            ScopeRegistry([scope], shapes)
    with pytest.raises(ConfigurationError):
        ScopeRegistry([SyncScope("s", shapes=[ScopeShape("notes")])] * 2, shapes)


async def test_a_template_outside_the_shape_is_refused_when_bound() -> None:
    """A where on an undeclared column (a scope cannot reach more than the shape), or a
    prefetch path off the origin, is the app's mistake: a configuration error."""
    shapes = definitions()
    for scope in [
        SyncScope("s", shapes=[ScopeShape("cases", where="secret = 'x'")]),
        SyncScope("s", shapes=[ScopeShape("cases", where="org = 2")]),  # the scope column
        SyncScope("s", shapes=[ScopeShape("notes")], prefetch=["//evil.test/x"]),
        SyncScope("s", shapes=[ScopeShape("notes")], prefetch=["https://evil.test/x"]),
    ]:
        with pytest.raises(ConfigurationError):
            await ScopeRegistry([scope], shapes).answer("s", request(x_user="1"))
