"""Passwords (argon2id) and JWT access/refresh tokens for casebook.

Tokens are signed with HS256. An access token carries the principal (user, organization,
role), so authorizing a request needs no database round trip; a refresh token is exchanged
for a new pair only after the user is re-read and found active, and only once
(:mod:`casebook.refresh`). Requests also check that the token's user still stands (active,
same role), from the exact cache (:mod:`casebook.standing`): a demotion or deactivation
ends the user's open sessions at their next request.

Password checks cost ~20 ms of CPU each. :class:`Passwords` runs them in threads of their
own (argon2 releases the GIL), at most ``workers`` at once, with at most ``queue`` waiting:
the event loop keeps serving every other request while logins queue, and a login past the
queue is refused at once with 503 + ``Retry-After`` instead of waiting without bound.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from casebook.models import Role, User
from lockstep import AuthenticationError, OverloadedError, TokenExpiredError

# OWASP's minimum argon2id profile (19 MiB, t=2): ~20 ms a hash on this machine class.
_hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
# Verified against when the e-mail is unknown, so both paths cost the same (no user probing).
_DUMMY_HASH = _hasher.hash("not-a-password")

TokenType = Literal["access", "refresh"]


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; always spends one verification, even for no hash."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


class Passwords:
    """Password verification off the event loop, with bounded concurrency (see the module).

    ``verify`` raises :class:`~lockstep.OverloadedError` when ``workers + queue`` checks are
    already under way; it always spends one verification otherwise (the unknown e-mail
    included), so a wrong password and an unknown e-mail take the same time.
    """

    def __init__(self, *, workers: int, queue: int) -> None:
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="casebook-passwords")
        self._capacity = workers + queue
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Checks running or waiting now."""
        return self._in_flight

    async def verify(self, password_hash: str | None, password: str) -> bool:
        if self._in_flight >= self._capacity:
            raise OverloadedError("too many sign-ins at once; try again shortly", retry_after=1)
        self._in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._executor, verify_password, password_hash, password
            )
        finally:
            self._in_flight -= 1

    async def hash(self, password: str) -> str:
        """``password``'s argon2id hash, computed in the same bounded threads as checks."""
        if self._in_flight >= self._capacity:
            raise OverloadedError("too many password operations at once; try again", retry_after=1)
        self._in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, hash_password, password)
        finally:
            self._in_flight -= 1

    def close(self) -> None:
        """Stop the threads once the checks under way are done."""
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: every query is scoped to ``organization_id``."""

    user_id: int
    organization_id: int
    role: Role
    email: str

    def has_role(self, *roles: Role) -> bool:
        return self.role in roles or self.role is Role.ADMIN


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret


class TokenService:
    """Issues and checks tokens with one signing key."""

    def __init__(self, key: str, *, access_minutes: int, refresh_days: int) -> None:
        self._key = key
        self._access = dt.timedelta(minutes=access_minutes)
        self._refresh = dt.timedelta(days=refresh_days)
        self._memo: dict[str, tuple[Principal, float]] = {}

    def issue(self, user: User, *, family: str, jti: str) -> tuple[TokenPair, dt.datetime]:
        """A pair whose refresh token is ``jti`` of sign-in ``family`` (recorded by the
        caller: :mod:`casebook.refresh`), and when that refresh token expires."""
        now = dt.datetime.now(dt.UTC)
        claims = {
            "sub": str(user.id),
            "org": user.organization_id,
            "role": user.role.value,
            "email": user.email,
            "iat": now,
        }
        access = self._encode({**claims, "typ": "access", "exp": now + self._access})
        expires = now + self._refresh
        refresh = self._encode({**claims, "typ": "refresh", "exp": expires, "fam": family}, jti=jti)
        return TokenPair(access, refresh, int(self._access.total_seconds())), expires

    def verify_refresh(self, token: str) -> tuple[Principal, str, str]:
        """The principal, token id and sign-in family of a valid refresh token;
        AuthenticationError otherwise."""
        claims = self._decode(token)
        if claims["typ"] != "refresh" or not isinstance(claims.get("fam"), str):
            raise AuthenticationError("a refresh token is required")
        principal, _ = self._principal(claims)
        return principal, str(claims.get("jti", "")), claims["fam"]

    def verify(self, token: str, expected: TokenType = "access") -> Principal:
        """The principal in a valid token; AuthenticationError for anything else."""
        return self._verify(token, expected)[0]

    def verify_until(self, token: str) -> tuple[Principal, float]:
        """Like ``verify`` for access tokens, with the token's expiry (unix seconds);
        TokenExpiredError when it has expired (the realtime connection refreshes it)."""
        return self._verify(token, "access")

    def verify_fast(self, token: str) -> Principal | None:
        """Like ``verify`` for access tokens, remembering valid tokens until they expire
        (bounded), so a cached answer can be served before routing; None if not valid."""
        known = self._memo.get(token)
        if known is not None:
            principal, expires = known
            if time.time() < expires:
                return principal
            del self._memo[token]
        try:
            principal, expires = self._verify(token, "access")
        except AuthenticationError:
            return None
        if len(self._memo) >= 10_000:
            self._memo.clear()
        self._memo[token] = (principal, expires)
        return principal

    def _verify(self, token: str, expected: TokenType) -> tuple[Principal, float]:
        claims = self._decode(token)
        if claims["typ"] != expected:
            raise AuthenticationError(f"a {expected} token is required")
        return self._principal(claims)

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                options={"require": ["exp", "sub", "typ", "org", "role"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpiredError("token expired") from None
        except jwt.InvalidTokenError:
            raise AuthenticationError("invalid token") from None
        return claims

    def _principal(self, claims: dict[str, Any]) -> tuple[Principal, float]:
        try:
            principal = Principal(
                int(claims["sub"]),
                int(claims["org"]),
                Role(claims["role"]),
                str(claims.get("email", "")),
            )
            return principal, float(claims["exp"])
        except (TypeError, ValueError):
            raise AuthenticationError("invalid token") from None

    def _encode(self, claims: dict[str, Any], jti: str | None = None) -> str:
        return jwt.encode({**claims, "jti": jti or uuid.uuid4().hex}, self._key, algorithm="HS256")
