"""Refresh tokens that can be used once: rotation, reuse detection, logout.

A sign-in starts a *family*; each refresh token issued is recorded by its JWT id. Guarantees:

* **Rotation**: exchanging a refresh token marks it used and returns a new pair of the same
  family; the used token is worthless from then on.
* **Reuse detection**: presenting a used token again — a stolen copy, or the legitimate
  client after a thief already rotated it — revokes the whole family: every refresh token of
  that sign-in stops working and its holder must sign in again. Two concurrent exchanges of
  one token are one use and one reuse (a compare-and-set on ``used_at``).
* **Logout** revokes the family of the token it is given.
* Access tokens are not recorded: one already issued stays valid until it expires
  (``LOCKSTEP_ACCESS_TOKEN_MINUTES``) after a logout; a deactivation or a role change ends
  it at once (:mod:`casebook.standing`).

Refresh tokens without a record (issued before migration 0006) are refused.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from casebook.auth import TokenPair, TokenService
from casebook.models import RefreshToken, User
from lockstep import AuthenticationError, Database


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def start(session: AsyncSession, tokens: TokenService, user: User) -> TokenPair:
    """A new sign-in's pair (in the caller's write transaction); the user's expired records
    are dropped on the way."""
    await session.execute(
        delete(RefreshToken).where(
            RefreshToken.user_id == user.id, RefreshToken.expires_at < _now()
        )
    )
    return _issue(session, tokens, user, uuid.uuid4().hex)


async def rotate(db: Database, tokens: TokenService, token: str) -> TokenPair:
    """The next pair for ``token``; AuthenticationError for an invalid, used (the family is
    revoked, committed, before the error), revoked or unrecorded token, or a user no longer
    active."""
    principal, jti, family = tokens.verify_refresh(token)
    refused: str | None = None
    pair: TokenPair | None = None
    async with db.writer() as session:
        now = _now()
        used = await session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.jti == jti,
                RefreshToken.used_at.is_(None),
                RefreshToken.revoked_at.is_(None),
            )
            .values(used_at=now)
        )
        if used.rowcount != 1:  # type: ignore[attr-defined]
            record = await session.get(RefreshToken, jti)
            if record is not None and record.revoked_at is None:
                await _revoke(session, family, now)  # a used token again: stolen
                refused = "refresh token already used: sign in again"
            else:
                refused = "refresh token revoked: sign in again"
        else:
            user = await session.get(User, principal.user_id)
            if user is None or not user.is_active:
                raise AuthenticationError("user is no longer active")
            pair = _issue(session, tokens, user, family)
    if refused is not None:
        raise AuthenticationError(refused)
    assert pair is not None
    return pair


async def revoke(db: Database, tokens: TokenService, token: str) -> None:
    """End the sign-in ``token`` belongs to (idempotent); AuthenticationError if ``token``
    is not a valid refresh token."""
    _, _, family = tokens.verify_refresh(token)
    async with db.writer() as session:
        await _revoke(session, family, _now())


async def _revoke(session: AsyncSession, family: str, now: dt.datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family == family, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def _issue(session: AsyncSession, tokens: TokenService, user: User, family: str) -> TokenPair:
    jti = uuid.uuid4().hex
    pair, expires = tokens.issue(user, family=family, jti=jti)
    session.add(
        RefreshToken(
            jti=jti,
            family=family,
            user_id=user.id,
            organization_id=user.organization_id,
            expires_at=expires,
        )
    )
    return pair
