"""What a push may do: named mutations an application registers, and the pure decisions
about a batch (which mutations are replays, where a gap is).

    mutations = Mutations(authenticate=principal_of_request, owner=lambda p: p.user_id)

    @mutations.register("case.update", CaseEdit)
    async def update_case(ctx: MutationContext, args: CaseEdit) -> dict[str, Any]:
        case = await load(ctx.session, ctx.principal, args.case_id)
        ctx.expect_version(case.version, current=lambda: case_out(case))  # stale: a conflict
        case.title = args.title
        return {"version": case.version + 1}

A handler runs inside the push's transaction (one per mutation, in a savepoint): it writes
through ``ctx.session`` and returns a JSON-able result, or raises. A ``LockstepError`` below
500 (not found, permission denied, validation) rejects the mutation for good; a
:class:`StaleVersion` makes it a conflict carrying the current row; anything else (the
database unreachable, a 5xx) leaves it unapplied, to be retried.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from lockstep.exceptions import ConfigurationError, ConflictError, LockstepError

Args = TypeVar("Args", bound=BaseModel)
Handler = Callable[["MutationContext", Any], Awaitable[Any]]


class StaleVersion(ConflictError):
    """The row changed since the client read it (``base_version``): a per-mutation
    conflict whose details carry the row as it is now."""

    code = "stale_version"


class MutationGap(ConflictError):
    """A batch starts after a mutation the server has not applied: 409 with the id
    expected next (``details.expected``)."""

    code = "mutation_gap"

    def __init__(self, expected: int) -> None:
        super().__init__(f"mutations must continue from {expected}", details={"expected": expected})
        self.expected = expected


@dataclass(slots=True)
class MutationContext:
    """What a handler works with: the transaction's session, the caller, the version the
    client based the mutation on."""

    session: AsyncSession
    principal: Any
    base_version: Any
    name: str

    def expect_version(self, current_version: Any, *, current: Callable[[], Any]) -> None:
        """Raise :class:`StaleVersion` (with ``current()`` as the row) unless the client's
        ``base_version`` is ``current_version``; no ``base_version`` means no check."""
        if self.base_version is not None and str(self.base_version) != str(current_version):
            raise StaleVersion(
                f"{self.name}: the row is at version {current_version}, not {self.base_version}",
                details={"current": current(), "version": current_version},
            )


@dataclass(frozen=True, slots=True)
class Registered:
    name: str
    args: type[BaseModel]
    handler: Handler


class Mutations:
    """The mutations clients may push, and who the caller is.

    ``authenticate(request)`` returns the principal (may be async; raises
    ``AuthenticationError``); ``owner(principal)`` names who a client id belongs to, so one
    user cannot replay or read another's mutations.
    """

    def __init__(
        self,
        *,
        authenticate: Callable[[Request], Any],
        owner: Callable[[Any], Any],
    ) -> None:
        self._authenticate = authenticate
        self._owner = owner
        self.registered: dict[str, Registered] = {}

    def register(
        self, name: str, args: type[Args]
    ) -> Callable[[Callable[[MutationContext, Args], Awaitable[Any]]], Any]:
        def decorate(handler: Callable[[MutationContext, Args], Awaitable[Any]]) -> Any:
            if name in self.registered:
                raise ConfigurationError(f"mutation {name!r} is registered twice")
            self.registered[name] = Registered(name, args, handler)
            return handler

        return decorate

    async def authenticate(self, request: Request) -> tuple[Any, str]:
        principal = self._authenticate(request)
        if inspect.isawaitable(principal):
            principal = await principal
        return principal, str(self._owner(principal))


@dataclass(frozen=True, slots=True)
class Step:
    """What to do with one mutation of a batch: ``replay`` its stored answer, or ``apply``."""

    mutation_id: int
    action: str  # "replay" | "apply"


def plan(last_applied: int, mutation_ids: Sequence[int]) -> list[Step]:
    """The steps for a batch whose ids are consecutive, given the client's last applied id.

    Ids up to ``last_applied`` are replays; the first one above must be ``last_applied +
    1``, else :class:`MutationGap`. Raises ``ValueError`` for ids that are not consecutive.
    """
    for before, after in itertools.pairwise(mutation_ids):
        if after != before + 1:
            raise ValueError("mutation ids in a batch must be consecutive")
    steps: list[Step] = []
    for mutation_id in mutation_ids:
        if mutation_id <= last_applied:
            steps.append(Step(mutation_id, "replay"))
        elif mutation_id == last_applied + 1:
            steps.append(Step(mutation_id, "apply"))
            last_applied = mutation_id
        else:
            raise MutationGap(last_applied + 1)
    return steps


def outcome_of(error: BaseException) -> tuple[str, int, str, bool]:
    """(status word, HTTP status, code, retryable) for what a handler raised."""
    if isinstance(error, StaleVersion):
        return "conflict", 409, error.code, False
    if isinstance(error, LockstepError) and error.status_code < 500:
        retryable = error.status_code == 429
        return ("failed" if retryable else "rejected"), error.status_code, error.code, retryable
    if isinstance(error, LockstepError):
        return "failed", error.status_code, error.code, True
    return "failed", 503, "mutation_failed", True


def error_of(error: BaseException, status: int, code: str, retryable: bool) -> dict[str, Any]:
    """A mutation's error as JSON: never the text of an unexpected exception."""
    if isinstance(error, LockstepError):
        message, details = error.message, error.details
    else:
        message, details = "the mutation could not be applied now; retry", None
    return {
        "code": code,
        "message": message,
        "status": status,
        "retryable": retryable,
        "details": details,
    }


def plain(value: Any) -> Any:
    """A handler's result as JSON-able data (pydantic models dumped)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
