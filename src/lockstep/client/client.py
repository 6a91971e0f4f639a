"""``Client``: an httpx client for lockstep apps that survives the network.

    async with Client(["http://10.0.0.1:8000", "http://10.0.0.2:8000"],
                      token=login, refresh=refresh_token) as client:
        cases = (await client.get("/api/v1/cases")).json()

What it guarantees:

* **Tokens**: ``token()`` gives the bearer token for every request; a 401 calls
  ``refresh()`` once and repeats the request with the new token.
* **Retries** with exponential backoff and full jitter (``Backoff``), honouring
  ``Retry-After``, on network errors, 429 and 5xx — never on another 4xx (400, 404, 422 are
  answers, not accidents). Methods that are not idempotent (POST, PATCH) are retried only
  when the request surely never reached a server (a refused connection) or when the caller
  says it is idempotent (``idempotent=True``: a push is).
* **Coalescing**: identical GETs in flight at once (same URL, same caller) share one request.
* **ETag cache**: a GET answered with an ``ETag`` is remembered per caller; the next one
  sends ``If-None-Match`` and a 304 is answered from the remembered body.
* **Several servers**: ``balancing="round_robin"`` or ``"least_outstanding"``; a server that
  fails at the network level is marked down and the request goes to the next; a
  background health check (``GET health_path``) brings it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import inspect
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

TokenSource = Callable[[], "str | Awaitable[str]"]
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: attempt ``n`` waits a random time in
    ``[0, min(cap, base * 2**n)]``, and at least what ``Retry-After`` asks."""

    attempts: int = 5
    base: float = 0.2
    cap: float = 10.0

    def delay(self, attempt: int, retry_after: float | None = None, rng: Any = random) -> float:
        wait = float(rng.uniform(0, min(self.cap, self.base * 2**attempt)))
        return max(wait, retry_after or 0.0)


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta or HTTP date), capped at an hour."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    if value.strip().isdigit():
        return min(float(value), 3600.0)
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, min(when.timestamp() - time.time(), 3600.0))
    return None


def should_retry(method: str, outcome: httpx.Response | Exception, idempotent: bool) -> bool:
    """The retry policy, as a pure decision."""
    safe = idempotent or method in IDEMPOTENT
    if isinstance(outcome, httpx.ConnectError | httpx.ConnectTimeout):
        return True  # never reached a server: nothing was done there
    if isinstance(outcome, Exception):
        return safe and isinstance(outcome, httpx.TransportError)
    if outcome.status_code == 429 or (
        outcome.status_code == 503 and "retry-after" in outcome.headers
    ):
        return True  # the server says it did nothing: come back later
    return safe and outcome.status_code in RETRY_STATUSES


@dataclass(slots=True)
class Server:
    base: str
    up: bool = True
    outstanding: int = 0
    failures: int = 0


@dataclass(slots=True)
class _Cached:
    etag: str
    response: httpx.Response


@dataclass(slots=True)
class Client:
    """See the module docs. ``transport`` replaces the network (tests)."""

    servers: list[str] | str
    token: TokenSource | None = None
    refresh: TokenSource | None = None
    balancing: str = "round_robin"
    backoff: Backoff = field(default_factory=Backoff)
    health_path: str = "/ready"
    health_interval: float = 2.0
    timeout: float = 30.0
    transport: httpx.AsyncBaseTransport | None = None
    _pool: list[Server] = field(init=False)
    _http: httpx.AsyncClient = field(init=False)
    _turn: int = field(init=False, default=0)
    _inflight: dict[tuple[str, str], asyncio.Future[httpx.Response]] = field(
        init=False, default_factory=dict
    )
    _etags: dict[tuple[str, str], _Cached] = field(init=False, default_factory=dict)
    _health: asyncio.Task[None] | None = field(init=False, default=None)
    _current_token: str | None = field(init=False, default=None)
    sent: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        bases = [self.servers] if isinstance(self.servers, str) else list(self.servers)
        if not bases:
            raise ValueError("a Client needs at least one server")
        if self.balancing not in ("round_robin", "least_outstanding"):
            raise ValueError("balancing is round_robin or least_outstanding")
        self._pool = [Server(b.rstrip("/")) for b in bases]
        self._http = httpx.AsyncClient(timeout=self.timeout, transport=self.transport)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._health is not None:
            self._health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health
        await self._http.aclose()

    # -- the public calls --------------------------------------------------------------------

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kwargs)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = False,
        cache: bool = True,
    ) -> httpx.Response:
        """One logical request: balanced, retried, coalesced and cached as the module
        says. Raises the last ``httpx`` error when every attempt failed at the network."""
        method = method.upper()
        if method != "GET":
            return await self._send(method, path, params, json, headers, idempotent, cache)
        token = await self._token()
        key = (str(httpx.URL(path, params=params or {})), token or "")
        running = self._inflight.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[httpx.Response] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            response = await self._send(method, path, params, json, headers, idempotent, cache)
            future.set_result(response)
            return response
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            del self._inflight[key]

    # -- internals ---------------------------------------------------------------------------

    async def _token(self, fresh: bool = False) -> str | None:
        source = self.refresh if fresh else self.token
        if source is None:
            return None
        if fresh or self._current_token is None:
            value = source()
            self._current_token = await value if inspect.isawaitable(value) else value
        return self._current_token

    def _pick(self, tried: set[int]) -> int:
        candidates = [i for i, s in enumerate(self._pool) if s.up and i not in tried]
        if not candidates:  # everything is down: try the untried anyway, then any
            candidates = [i for i in range(len(self._pool)) if i not in tried] or list(
                range(len(self._pool))
            )
        if self.balancing == "least_outstanding":
            return min(candidates, key=lambda i: (self._pool[i].outstanding, i))
        self._turn += 1
        return candidates[self._turn % len(candidates)]

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json: Any,
        headers: Mapping[str, str] | None,
        idempotent: bool,
        cache: bool,
    ) -> httpx.Response:
        refreshed = False
        tried: set[int] = set()
        attempt = 0
        while True:
            index = self._pick(tried)
            server = self._pool[index]
            token = await self._token()
            sent_headers = dict(headers or {})
            if token:
                sent_headers["Authorization"] = f"Bearer {token}"
            cache_key = (str(httpx.URL(path, params=params or {})), token or "")
            cached = self._etags.get(cache_key) if method == "GET" and cache else None
            if cached is not None:
                sent_headers["If-None-Match"] = cached.etag
            server.outstanding += 1
            self.sent += 1
            try:
                response = await self._http.request(
                    method, server.base + path, params=params, json=json, headers=sent_headers
                )
                await response.aread()
                outcome: httpx.Response | Exception = response
            except httpx.TransportError as exc:
                outcome = exc
            finally:
                server.outstanding -= 1
            if isinstance(outcome, Exception):
                self._mark_down(server)
                tried.add(index)
            elif outcome.status_code == 401 and self.refresh is not None and not refreshed:
                refreshed = True
                await self._token(fresh=True)
                continue
            elif outcome.status_code == 304 and cached is not None:
                return cached.response
            elif method == "GET" and cache and "etag" in outcome.headers and outcome.is_success:
                self._etags[cache_key] = _Cached(outcome.headers["etag"], outcome)
            if (
                not should_retry(method, outcome, idempotent)
                or attempt + 1 >= self.backoff.attempts
            ):
                if isinstance(outcome, Exception):
                    raise outcome
                return outcome
            wait = self.backoff.delay(
                attempt, None if isinstance(outcome, Exception) else retry_after(outcome)
            )
            attempt += 1
            if isinstance(outcome, Exception) and len(tried) < len(self._pool):
                continue  # fail over to the next server at once
            tried.clear()
            await asyncio.sleep(wait)

    def _mark_down(self, server: Server) -> None:
        server.up = False
        server.failures += 1
        if self._health is None or self._health.done():
            self._health = asyncio.create_task(self._check_health())

    async def _check_health(self) -> None:
        """Probe servers marked down until each answers its health path again."""
        while any(not s.up for s in self._pool):
            await asyncio.sleep(self.health_interval)
            for server in self._pool:
                if server.up:
                    continue
                with contextlib.suppress(httpx.TransportError):
                    probe = await self._http.get(server.base + self.health_path, timeout=2.0)
                    if probe.status_code < 500:
                        server.up = True

    @property
    def servers_up(self) -> list[str]:
        return [s.base for s in self._pool if s.up]
