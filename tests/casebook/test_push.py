"""``POST /sync/push`` on casebook, both backends: in order, exactly once, atomically with the
client's last applied id (requirements 9 and 10)."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from casebook.models import Case, Subject

from .conftest import Login


def edit(mutation_id: int, case_id: int, base: Any = None, **fields: Any) -> dict[str, Any]:
    return {
        "mutation_id": mutation_id,
        "name": "case.update",
        "args": {"case_id": case_id, **fields},
        "base_version": base,
    }


async def case_row(app: FastAPI, case_id: int) -> Case:
    async with app.state.services.db.reader() as session:
        case = await session.scalar(select(Case).where(Case.id == case_id))
        assert case is not None
        return case


async def push(client: httpx.AsyncClient, client_id: str, *mutations: Any) -> httpx.Response:
    return await client.post(
        "/sync/push", json={"client_id": client_id, "mutations": list(mutations)}
    )


async def test_mutations_apply_in_order_once_and_replays_return_the_stored_answer(
    login: Login, casebook_app: FastAPI
) -> None:
    analyst = await login("analyst@acme.test")
    before = await case_row(casebook_app, 1)
    batch = [
        edit(1, 1, before.version, title="first"),
        edit(2, 1, None, title="second"),
        {"mutation_id": 3, "name": "subject.notes", "args": {"subject_id": 1, "notes": "n"}},
    ]
    first = await push(analyst, "tab-a", *batch)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert answer["last_mutation_id"] == 3
    assert [r["status"] for r in answer["results"]] == ["applied"] * 3
    assert all(isinstance(r["txid"], int) for r in answer["results"])
    assert first.headers["cache-control"] == "no-store"
    case = await case_row(casebook_app, 1)
    assert (case.title, case.version) == ("second", before.version + 2)

    # The response was lost: the client sends the batch again, and one more.
    again = await push(analyst, "tab-a", *batch, edit(4, 1, None, title="fourth"))
    results = again.json()["results"]
    assert [r.get("duplicate", False) for r in results] == [True, True, True, False]
    assert [r["txid"] for r in results[:3]] == [r["txid"] for r in answer["results"]]
    assert [r["result"] for r in results[:3]] == [r["result"] for r in answer["results"]]
    case = await case_row(casebook_app, 1)
    assert (case.title, case.version) == ("fourth", before.version + 3)


async def test_a_gap_is_409_with_the_expected_id(login: Login) -> None:
    analyst = await login("analyst@acme.test")
    assert (await push(analyst, "gap", edit(1, 1, title="a"))).status_code == 200
    response = await push(analyst, "gap", edit(3, 1, title="c"))
    assert response.status_code == 409
    error = response.json()["error"]
    assert (error["code"], error["retryable"], error["details"]) == (
        "mutation_gap",
        False,
        {"expected": 2},
    )
    not_consecutive = await push(analyst, "gap", edit(2, 1, title="b"), edit(4, 1, title="d"))
    assert not_consecutive.status_code == 400
    assert not_consecutive.json()["error"]["retryable"] is False


async def test_bad_args_and_stale_versions_are_per_mutation_and_earlier_ones_stay(
    login: Login, casebook_app: FastAPI
) -> None:
    analyst = await login("analyst@acme.test")
    version = (await case_row(casebook_app, 2)).version
    response = await push(
        analyst,
        "mixed",
        edit(1, 2, version, title="kept"),
        edit(2, 2, None, title="also bad", priority=9),
        edit(3, 2, version, title="stale"),
        {"mutation_id": 4, "name": "no.such", "args": {}},
        edit(5, 987654, None, title="missing"),
        edit(6, 2, version + 1, status="under_review"),
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [
        "applied", "rejected", "conflict", "rejected", "rejected", "applied",
    ]  # fmt: skip
    codes = [r.get("error", {}).get("code") for r in results]
    assert codes == [
        None, "validation_error", "stale_version", "bad_request", "not_found", None,
    ]  # fmt: skip
    assert all(r["error"]["retryable"] is False for r in results if "error" in r)
    conflict = results[2]["error"]
    assert conflict["status"] == 409
    assert conflict["details"]["current"]["title"] == "kept"
    case = await case_row(casebook_app, 2)
    assert (case.title, case.status.value, case.version) == ("kept", "under_review", version + 2)


async def test_a_case_is_reassigned_offline_only_to_a_member_of_its_organization(
    login: Login, casebook_app: FastAPI
) -> None:
    analyst = await login("analyst@acme.test")
    acme = {p["full_name"]: p["id"] for p in (await analyst.get("/api/v1/people")).json()["items"]}
    globex = await login("analyst@globex.test")
    stranger = (await globex.get("/api/v1/auth/me")).json()["id"]
    version = (await case_row(casebook_app, 4)).version
    response = await push(
        analyst,
        "reassign",
        edit(1, 4, version, assignee_id=stranger),
        edit(2, 4, version, assignee_id=acme["Rui Reviewer"]),
        edit(3, 4, version + 1, assignee_id=None),
    )
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["rejected", "applied", "applied"]
    assert results[0]["error"]["details"][0]["type"] == "unknown_reference"
    assert (await case_row(casebook_app, 4)).assignee_id is None


async def test_two_tabs_pushing_one_outbox_apply_it_once(
    login: Login, casebook_app: FastAPI
) -> None:
    tab_one = await login("analyst@acme.test")
    tab_two = await login("analyst@acme.test")
    version = (await case_row(casebook_app, 3)).version
    outbox = [edit(i, 3, None, title=f"t{i}") for i in range(1, 6)]
    one, two = await asyncio.gather(
        push(tab_one, "shared", *outbox), push(tab_two, "shared", *outbox)
    )
    assert one.status_code == two.status_code == 200
    applied = [r for r in one.json()["results"] + two.json()["results"] if not r.get("duplicate")]
    assert sorted(r["mutation_id"] for r in applied) == [1, 2, 3, 4, 5]
    case = await case_row(casebook_app, 3)
    assert (case.title, case.version) == ("t5", version + 5)


async def test_a_client_id_belongs_to_its_user(login: Login) -> None:
    analyst = await login("analyst@acme.test")
    other = await login("admin@acme.test")
    assert (await push(analyst, "mine", edit(1, 1, title="x"))).status_code == 200
    stolen = await push(other, "mine", edit(1, 1, title="y"))
    assert stolen.status_code == 403
    assert stolen.json()["error"]["retryable"] is False
    reviewer = await login("reviewer@acme.test")
    denied = await push(reviewer, "rev", edit(1, 1, title="z"))
    assert denied.json()["results"][0]["error"]["code"] == "permission_denied"
    anonymous = httpx.AsyncClient(transport=analyst._transport, base_url=str(analyst.base_url))
    async with anonymous:
        response = await push(anonymous, "anon", edit(1, 1, title="z"))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


async def test_fuzzed_batches_never_half_apply(login: Login, casebook_app: FastAPI) -> None:
    """Random batches of good, invalid, stale and unknown mutations, sent with lost
    responses, repeats and overlaps: every mutation is applied at most once and wholly
    (each applied case.update moves the version by one and leaves its title), rejected ones
    change nothing, and a replay always returns the first answer."""
    analyst = await login("analyst@acme.test")
    rng = random.Random(7)
    client_id = f"fuzz-{uuid.uuid4().hex[:8]}"
    start = await case_row(casebook_app, 4)
    subject_notes_before = await _notes(casebook_app, 1)
    sent: list[dict[str, Any]] = []
    answers: dict[int, dict[str, Any]] = {}
    for _ in range(25):
        new = []
        for _ in range(rng.randint(1, 4)):
            mutation_id = len(sent) + len(new) + 1
            kind = rng.choice(["ok", "ok", "ok", "invalid", "stale", "unknown", "notes"])
            if kind == "ok":
                new.append(edit(mutation_id, 4, None, title=f"m{mutation_id}"))
            elif kind == "invalid":
                new.append(edit(mutation_id, 4, None, title=f"m{mutation_id}", priority=0))
            elif kind == "stale":
                new.append(edit(mutation_id, 4, -1, title=f"m{mutation_id}"))
            elif kind == "notes":
                new.append(
                    {
                        "mutation_id": mutation_id,
                        "name": "subject.notes",
                        "args": {"subject_id": 1, "notes": "x" * 20_000},
                    }
                )  # too long
            else:
                new.append({"mutation_id": mutation_id, "name": "nope", "args": {}})
        sent.extend(new)
        # Resend from a random earlier point (a lost response), sometimes all of it.
        start_at = rng.randint(max(0, len(sent) - len(new) - 5), len(sent) - len(new))
        response = await push(analyst, client_id, *sent[start_at:])
        assert response.status_code == 200, response.text
        for result in response.json()["results"]:
            known = answers.setdefault(result["mutation_id"], result)
            assert {k: v for k, v in result.items() if k != "duplicate"} == {
                k: v for k, v in known.items() if k != "duplicate"
            }
    applied = sorted(i for i, r in answers.items() if r["status"] == "applied")
    assert sorted(answers) == list(range(1, len(sent) + 1))
    case = await case_row(casebook_app, 4)
    assert case.version == start.version + len(applied)
    if applied:
        assert case.title == f"m{applied[-1]}"
    assert await _notes(casebook_app, 1) == subject_notes_before


async def _notes(app: FastAPI, subject_id: int) -> str:
    async with app.state.services.db.reader() as session:
        notes = await session.scalar(select(Subject.notes).where(Subject.id == subject_id))
        return str(notes)
