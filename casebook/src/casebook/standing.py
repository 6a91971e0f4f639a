"""Whether an access token's user still stands as the token says: active, same role.

An access token carries its principal, so checking it needs no database. Without more, an
admin who deactivates or demotes a user would leave the user's tokens working until they
expire (15 minutes). :class:`Standing` closes that gap at the cost of a memory read: each
user's standing (active, role, organization) is memoized on lockstep's exact cache,
depending on that user's row, so it is read from the database once and again only after
the row changes. The change feed bumps the row's stamp in the transaction that deactivates
the user, so the next request of any of the user's tokens — answered before routing from
the cache, or through a route — is refused (401), in this process and, with Redis, in every
process. A user's standing is one small row; an organization of thousands of users costs
as many cache entries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

from sqlalchemy import select
from starlette.types import Scope

from casebook.auth import Principal, TokenService
from casebook.models import Role, User
from lockstep import AuthenticationError, Cache, Database, Row


@dataclass(frozen=True, slots=True)
class _Stands:
    active: bool
    role: Role
    organization_id: int


class Standing:
    """Confirms principals against their users' current rows (see the module)."""

    def __init__(self, db: Database, cache: Cache, tokens: TokenService | None) -> None:
        self._db = db
        self._tokens = tokens
        self._read = cache.cached(
            depends=lambda user_id: [Row("users", user_id)], name="casebook.standing"
        )(self._read_row)

    async def _read_row(self, user_id: int) -> _Stands | None:
        async with self._db.reader() as session:
            found = (
                await session.execute(
                    select(User.is_active, User.role, User.organization_id).where(
                        User.id == user_id
                    )
                )
            ).one_or_none()
        return None if found is None else _Stands(found[0], found[1], found[2])

    async def confirms(self, principal: Principal) -> bool:
        """True while the principal's user exists, is active and has the token's role and
        organization."""
        stands = await self._read(principal.user_id)
        return (
            stands is not None
            and stands.active
            and stands.role is principal.role
            and stands.organization_id == principal.organization_id
        )

    async def authenticate(self, token: str) -> Principal:
        """The principal of a valid access token whose user still stands; else
        :class:`~lockstep.AuthenticationError` (401)."""
        principal, _ = await self.authenticate_until(token)
        return principal

    async def authenticate_until(self, token: str) -> tuple[Principal, float]:
        """:meth:`authenticate`, and the token's expiry (unix seconds; realtime connections)."""
        if self._tokens is None:
            raise AuthenticationError("this process authenticates no one (no signing key)")
        principal, expires_at = self._tokens.verify_until(token)
        if not await self.confirms(principal):
            raise AuthenticationError(
                "this session has ended (the account was deactivated or its role changed): "
                "sign in again"
            )
        return principal, expires_at

    def identify(
        self, caller: Callable[[Scope], Principal | None]
    ) -> Callable[[Scope], Awaitable[Hashable | None]]:
        """lockstep's ``identify`` hook: who the caller is (user and role) when the token is
        valid and its user still stands, else None (the request then takes the full path
        and authentication refuses it). Cached answers are replayed before routing only to
        the caller they were produced for."""

        async def identify(scope: Scope) -> Hashable | None:
            principal = caller(scope)
            if principal is None or not await self.confirms(principal):
                return None
            return (principal.user_id, principal.role.value)

        return identify
