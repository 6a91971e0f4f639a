"""``POST /sync/push``: a client's mutations, applied in order, each exactly once.

Body: ``{"client_id": "...", "mutations": [{"mutation_id": 1, "name": "case.update",
"args": {...}, "base_version": 3}, ...]}`` with consecutive ids. Each mutation is one
transaction that locks the client's row, checks its last applied id, runs the handler in a
savepoint and stores the answer with the new last id, so a mutation and the record that it
happened commit together:

* an id already applied (a reload, a second tab, a lost response) applies nothing and
  returns the stored answer, with its ``txid`` and ``"duplicate": true``;
* a batch starting past the next id: 409 ``mutation_gap`` with ``details.expected``;
* a rejected mutation (bad args 422, not found, forbidden) or a conflict (a stale
  ``base_version``: 409 ``stale_version`` with the current row) is recorded and the batch
  goes on: earlier mutations stay applied;
* a failure that may pass (database unreachable, a 5xx) stops the batch there, unapplied,
  ``retryable: true``.

The answer is 200 ``{"client_id", "last_mutation_id", "results": [...]}`` unless nothing
could be done (a 4xx or 503 envelope). Errors are JSON with ``code`` and ``retryable``;
clients never read ``message``. Each applied mutation reports its transaction's ``txid``,
the id its rows carry in shape messages.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

import orjson
import structlog
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from lockstep.changes import committing_changeset
from lockstep.db import Database, Phase, Write
from lockstep.exceptions import (
    BadRequestError,
    ConflictError,
    LockstepError,
    PermissionDeniedError,
    ValidationFailedError,
)
from lockstep.offline.endpoint import error
from lockstep.offline.mutations import (
    MutationContext,
    MutationGap,
    Mutations,
    error_of,
    outcome_of,
    plain,
    plan,
)
from lockstep.offline.tables import sync_clients, sync_mutations

log = structlog.get_logger("lockstep.offline")

_ANSWER = "lockstep.offline.answer"  # the stored answer of the mutation being committed
_TXID = "lockstep.offline.txid"


class PushedMutation(BaseModel):
    mutation_id: int = Field(ge=1)
    name: str = Field(min_length=1, max_length=100)
    args: dict[str, Any] = Field(default_factory=dict)
    base_version: Any = None


class PushBody(BaseModel):
    client_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:\-]+$")
    mutations: list[PushedMutation] = Field(min_length=1, max_length=100)


class AnswerRecorder:
    """A write observer with nothing to observe: in ``Phase.RECORD``, after the change feed,
    it stores the answer of the mutation being committed together with the commit's
    ``txid`` (which only exists once the feed has logged the transaction)."""

    phase = Phase.RECORD

    def watched(self, table: str) -> Collection[str] | None:
        return None

    def observe(self, session: Session, write: Write) -> Iterable[Any]:
        return ()

    def commit(self, session: Session, items: list[Any]) -> None:
        answer: dict[str, Any] | None = session.info.pop(_ANSWER, None)
        if answer is None:
            return
        changeset = committing_changeset(session)
        # Nothing tracked written: no shape message will carry it, nothing to await.
        txid = None if changeset is None else changeset.txid
        answer["txid"] = txid
        connection = session.connection()
        connection.execute(
            insert(sync_mutations).values(
                client_id=answer["client_id"],
                mutation_id=answer["mutation_id"],
                outcome=answer["status"],
                response=orjson.dumps(answer).decode(),
            )
        )
        session.info[_TXID] = txid

    def committed(self, session: Session) -> None:
        return None

    def rolled_back(self, session: Session) -> None:
        session.info.pop(_ANSWER, None)


class Retry(Exception):
    def __init__(self, result: dict[str, Any], status: int) -> None:
        self.result = result
        self.status = status


class PushEndpoint:
    """Applies pushes with ``mutations`` on ``database``."""

    def __init__(self, database: Database, mutations: Mutations) -> None:
        self.database = database
        self.mutations = mutations
        database.observe(AnswerRecorder())

    async def __call__(self, request: Request) -> Response:
        try:
            principal, owner = await self.mutations.authenticate(request)
            try:
                body = PushBody.model_validate_json(await request.body())
            except ValidationError as exc:
                raise ValidationFailedError(
                    "push body is not valid", details=_errors(exc)
                ) from None
            ids = [m.mutation_id for m in body.mutations]
            return await self._push(body, ids, principal, owner)
        except LockstepError as exc:
            retryable = exc.status_code == 429 or exc.status_code >= 500
            return error(
                exc.status_code, exc.code, exc.message, retryable=retryable, details=exc.details
            )
        except DBAPIError:
            log.exception("push_database_error")
            return error(
                503, "database_unavailable", "the database did not answer; retry", retryable=True
            )

    async def _push(self, body: PushBody, ids: list[int], principal: Any, owner: str) -> Response:
        results: list[dict[str, Any]] = []
        last = 0
        try:
            for index, mutation in enumerate(body.mutations):
                result, last = await self._one(
                    body.client_id, owner, principal, mutation, ids[index:]
                )
                results.append(result)
        except Retry as stop:
            if not results:
                failure = stop.result["error"]
                return error(
                    stop.status,
                    failure["code"],
                    failure["message"],
                    retryable=True,
                    details={"mutation_id": stop.result["mutation_id"]},
                )
            results.append(stop.result)
        answer = {"client_id": body.client_id, "last_mutation_id": last, "results": results}
        return Response(
            orjson.dumps(answer),
            200,
            {"Cache-Control": "no-store"},
            media_type="application/json",
        )

    async def _one(
        self,
        client_id: str,
        owner: str,
        principal: Any,
        mutation: PushedMutation,
        rest: list[int],
    ) -> tuple[dict[str, Any], int]:
        """Apply (or replay) one mutation in a transaction of its own; its answer and the
        client's last applied id after it."""
        try:
            async with self.database.writer() as session:
                last = await _lock_client(session, client_id, owner)
                try:
                    [step, *_] = plan(last, rest)
                except ValueError as exc:
                    raise BadRequestError(str(exc)) from None
                if step.action == "replay":
                    return await _stored(session, client_id, mutation.mutation_id), last
                answer = await self._apply(session, principal, client_id, mutation)
                await session.execute(
                    update(sync_clients)
                    .where(sync_clients.c.client_id == client_id)
                    .values(last_mutation_id=mutation.mutation_id)
                )
                session.sync_session.info[_ANSWER] = answer
            answer["txid"] = session.sync_session.info.pop(_TXID, None)
            return answer, mutation.mutation_id
        except (MutationGap, PermissionDeniedError, BadRequestError):
            raise
        except (DBAPIError, LockstepError) as exc:
            status, code = (
                (503, "database_unavailable")
                if isinstance(exc, DBAPIError)
                else (
                    exc.status_code,
                    exc.code,
                )
            )
            result = {
                "mutation_id": mutation.mutation_id,
                "status": "failed",
                "error": error_of(exc, status, code, True),
            }
            raise Retry(result, status) from None
        except Exception as exc:  # a bug in a handler: unapplied, and said so
            log.exception("mutation_failed", mutation=mutation.name)
            result = {
                "mutation_id": mutation.mutation_id,
                "status": "failed",
                "error": error_of(exc, 503, "mutation_failed", True),
            }
            raise Retry(result, 503) from None

    async def _apply(
        self, session: AsyncSession, principal: Any, client_id: str, mutation: PushedMutation
    ) -> dict[str, Any]:
        answer: dict[str, Any] = {"client_id": client_id, "mutation_id": mutation.mutation_id}
        registered = self.mutations.registered.get(mutation.name)
        try:
            if registered is None:
                raise BadRequestError(f"no mutation named {mutation.name[:100]!r}")
            try:
                args = registered.args.model_validate(mutation.args)
            except ValidationError as exc:
                raise ValidationFailedError(
                    f"{mutation.name}: invalid args", details=_errors(exc)
                ) from None
            context = MutationContext(session, principal, mutation.base_version, mutation.name)
            async with session.begin_nested():
                result = await registered.handler(context, args)
                await session.flush()
        except (LockstepError, IntegrityError) as exc:
            if isinstance(exc, IntegrityError):
                exc = _integrity(mutation.name)
            status_word, status, code, retryable = outcome_of(exc)
            if retryable:
                raise exc from None
            answer.update(status=status_word, error=error_of(exc, status, code, False))
            return answer
        answer.update(status="applied", result=plain(result))
        return answer


def _integrity(name: str) -> LockstepError:
    return ConflictError(f"{name}: it conflicts with existing data")


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type")}
        for e in exc.errors()
    ]


async def _lock_client(session: AsyncSession, client_id: str, owner: str) -> int:
    """The client's last applied id, its row locked until commit (created at 0 on first
    use); 403 when the client id belongs to someone else."""
    stmt = select(sync_clients.c.owner, sync_clients.c.last_mutation_id).where(
        sync_clients.c.client_id == client_id
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).first()
    if row is None:
        try:
            async with session.begin_nested():
                await session.execute(
                    insert(sync_clients).values(
                        client_id=client_id, owner=owner, last_mutation_id=0
                    )
                )
        except IntegrityError:  # another tab created it a moment ago: wait for its lock
            row = (await session.execute(stmt)).first()
            assert row is not None
        else:
            return 0
    if row.owner != owner:
        raise PermissionDeniedError("this client id belongs to another user")
    return int(row.last_mutation_id)


async def _stored(session: AsyncSession, client_id: str, mutation_id: int) -> dict[str, Any]:
    response = await session.scalar(
        select(sync_mutations.c.response).where(
            sync_mutations.c.client_id == client_id,
            sync_mutations.c.mutation_id == mutation_id,
        )
    )
    if response is None:  # applied before its answer was kept (or pruned)
        return {
            "client_id": client_id,
            "mutation_id": mutation_id,
            "status": "applied",
            "duplicate": True,
            "txid": None,
        }
    stored: dict[str, Any] = orjson.loads(response)
    stored["duplicate"] = True
    return stored
