"""Rate limiting: the three algorithms on a fake clock, the same decisions on Redis in one
round trip, the middleware's keys (after authentication, proxies trusted only when
configured), headers once, and a store outage that lets requests through."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Hashable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from redis.asyncio import Redis
from starlette.types import Scope

from lockstep.exceptions import RateLimitedError
from lockstep.http import install_observability
from lockstep.http.ratelimit import (
    ClientAddress,
    MemoryRateLimitStore,
    RateLimit,
    RateLimiter,
    RateLimitMiddleware,
)
from lockstep.http.ratelimit.limiter import Check
from lockstep.http.ratelimit.redis import RedisRateLimitStore
from lockstep.settings import Settings
from lockstep.testing import FakeClock


def limiter_on(clock: FakeClock) -> RateLimiter:
    return RateLimiter(MemoryRateLimitStore(clock=clock))


async def allowed(limiter: RateLimiter, limit: RateLimit, n: int) -> list[bool]:
    results = []
    for _ in range(n):
        outcomes = await limiter.hit([Check(limit, "k")])
        assert outcomes is not None
        results.append(outcomes[0].allowed)
    return results


async def test_fixed_window_resets_on_the_window_edge() -> None:
    clock = FakeClock(1_000.0)
    limiter, limit = limiter_on(clock), RateLimit("f", 3, 10, "fixed")
    assert await allowed(limiter, limit, 4) == [True, True, True, False]
    outcome = (await limiter.hit([Check(limit, "k")]) or [])[0]
    assert outcome.retry_after == pytest.approx(10.0)  # 1000 is a window start
    assert outcome.remaining == 0
    clock.advance(9.99)
    assert await allowed(limiter, limit, 1) == [False]
    clock.advance(0.01)
    assert await allowed(limiter, limit, 4) == [True, True, True, False]


async def test_sliding_window_has_no_burst_at_the_edge_and_an_exact_retry_after() -> None:
    clock = FakeClock(1_009.0)  # one second before a window ends
    limiter, limit = limiter_on(clock), RateLimit("s", 10, 10, "sliding")
    assert await allowed(limiter, limit, 10) == [True] * 10
    clock.advance(1.0)  # a new window: a fixed window would allow 10 more at once
    outcome = (await limiter.hit([Check(limit, "k")]) or [])[0]
    assert not outcome.allowed
    clock.advance(outcome.retry_after - 0.001)
    assert await allowed(limiter, limit, 1) == [False]
    clock.advance(0.001)
    assert await allowed(limiter, limit, 1) == [True]


async def test_token_bucket_bursts_then_refills_at_its_rate() -> None:
    clock = FakeClock()
    limiter, limit = limiter_on(clock), RateLimit("b", 5, 10, "bucket")  # one every 2 s
    assert await allowed(limiter, limit, 6) == [True] * 5 + [False]
    outcome = (await limiter.hit([Check(limit, "k")]) or [])[0]
    assert outcome.retry_after == pytest.approx(2.0)
    clock.advance(2.0)
    assert await allowed(limiter, limit, 2) == [True, False]
    clock.advance(10.0)
    assert await allowed(limiter, limit, 6) == [True] * 5 + [False]


async def test_a_refused_request_counts_against_no_limit() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock)
    wide, narrow = RateLimit("wide", 100, 60, "fixed"), RateLimit("narrow", 1, 60, "fixed")
    for _ in range(5):
        await limiter.hit([Check(wide, "w"), Check(narrow, "n")])
    outcomes = await limiter.hit([Check(wide, "w")])
    assert outcomes is not None
    assert outcomes[0].remaining == 98  # only the first request was counted


async def test_check_raises_the_429_with_its_wait() -> None:
    limiter = limiter_on(FakeClock())
    limit = RateLimit("account", 1, 60, "fixed")
    await limiter.check(limit, "ada")
    with pytest.raises(RateLimitedError) as refused:
        await limiter.check(limit, "ada")
    assert refused.value.retry_after > 0
    await limiter.check(limit, "bob")  # another key, another quota


def test_rates_parse() -> None:
    assert RateLimit.parse("x", "10/minute").period == 60
    assert RateLimit.parse("x", "10/15 minutes").period == 900
    with pytest.raises(ValueError, match="expected"):
        RateLimit.parse("x", "ten per minute")
    with pytest.raises(ValueError, match="needs routes"):
        RateLimit("x", 1, 1, by=("route",))


# -- Redis -----------------------------------------------------------------------------


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[RedisRateLimitStore]:
    store = RedisRateLimitStore.from_url(redis_url, timeout=2.0)
    yield store
    await store.close()


@pytest.mark.parametrize("algorithm", ["fixed", "sliding", "bucket"])
async def test_redis_decides_like_memory(redis_store: RedisRateLimitStore, algorithm: Any) -> None:
    limit = RateLimit("r", 5, 3600, algorithm)
    limiter = RateLimiter(redis_store)
    results = await allowed(limiter, limit, 7)
    assert results == [True] * 5 + [False, False]
    outcome = (await limiter.hit([Check(limit, "k")]) or [])[0]
    assert outcome.remaining == 0
    # A sliding window may make the sixth request wait past this window's end, until a
    # fifth of the full one has slid out too: up to 3600 + 3600/5 seconds (the bound
    # depends on where in the hour the test runs, so it is the bound that is checked).
    longest = 3600 * (1 + 1 / 5) if algorithm == "sliding" else 3600
    assert 0 < outcome.retry_after <= longest
    assert outcome.limit == 5


async def test_redis_counts_concurrent_requests_exactly(
    redis_store: RedisRateLimitStore,
) -> None:
    limiter, limit = RateLimiter(redis_store), RateLimit("c", 7, 3600, "sliding")
    outcomes = await asyncio.gather(*(limiter.hit([Check(limit, "k")]) for _ in range(30)))
    assert sum(o[0].allowed for o in outcomes if o) == 7


async def test_redis_takes_one_round_trip_per_request(
    redis_store: RedisRateLimitStore, redis_url: str
) -> None:
    limiter = RateLimiter(redis_store)
    limits = [RateLimit("a", 100, 60), RateLimit("b", 100, 60, "bucket")]
    await limiter.hit([Check(limit, "k") for limit in limits])  # loads the script
    probe = Redis.from_url(redis_url)
    await probe.config_resetstat()
    for _ in range(10):
        await limiter.hit([Check(limit, "k") for limit in limits])
    stats = await probe.info("commandstats")
    await probe.aclose()
    # Ten requests, ten EVALSHA; everything else ran inside the script.
    assert stats["cmdstat_evalsha"]["calls"] == 10
    inside = {"cmdstat_time", "cmdstat_hmget", "cmdstat_hset", "cmdstat_pexpire"}
    assert set(stats) - inside == {"cmdstat_evalsha", "cmdstat_config|resetstat"}


async def test_a_store_that_fails_lets_requests_through() -> None:
    store = RedisRateLimitStore.from_url("redis://127.0.0.1:1/0", timeout=0.2)
    limiter = RateLimiter(store)
    assert await limiter.hit([Check(RateLimit("x", 1, 60), "k")]) is None
    assert await limiter.check(RateLimit("x", 1, 60), "k") is None
    await store.close()


# -- the middleware --------------------------------------------------------------------


def build_app(
    limiter: RateLimiter,
    limits: list[RateLimit],
    *,
    identify: Any = None,
    proxies: tuple[str, ...] = (),
) -> FastAPI:
    app = FastAPI()

    @app.get("/items")
    async def items() -> dict[str, str]:
        return {"ok": "yes"}

    @app.post("/login")
    async def login() -> JSONResponse:
        return JSONResponse({}, headers={"RateLimit-Limit": "1", "RateLimit-Remaining": "0"})

    app.add_middleware(
        RateLimitMiddleware,
        limiter=limiter,
        limits=limits,
        identify=identify,
        client_address=ClientAddress(proxies),
    )
    install_observability(app, Settings(env="test"), log_stream=io.StringIO())
    return app


def client(app: FastAPI, peer: str = "192.0.2.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 1234))
    return httpx.AsyncClient(transport=transport, base_url="http://t")


async def test_allowed_responses_carry_the_headers_refused_ones_a_429() -> None:
    limiter = limiter_on(FakeClock())
    app = build_app(limiter, [RateLimit("api", 2, 60, "fixed", by=("address",))])
    async with client(app) as c:
        first = await c.get("/items")
        assert first.headers["ratelimit-limit"] == "2"
        assert first.headers["ratelimit-remaining"] == "1"
        assert int(first.headers["ratelimit-reset"]) > 0
        await c.get("/items")
        refused = await c.get("/items")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.json()["error"]["details"] == {"limits": ["api"]}
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit-remaining"] == "0"
    assert "x-request-id" in refused.headers


async def test_users_count_apart_and_anonymous_requests_by_address() -> None:
    limiter = limiter_on(FakeClock())

    def identify(scope: Scope) -> Hashable | None:
        return dict(scope["headers"]).get(b"authorization")

    app = build_app(limiter, [RateLimit("api", 1, 60, "fixed")], identify=identify)
    async with client(app) as c:
        assert (await c.get("/items", headers={"Authorization": "ada"})).status_code == 200
        assert (await c.get("/items", headers={"Authorization": "bob"})).status_code == 200
        assert (await c.get("/items", headers={"Authorization": "ada"})).status_code == 429
        assert (await c.get("/items")).status_code == 200  # by address
        assert (await c.get("/items")).status_code == 429


async def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    limits = [RateLimit("api", 1, 60, "fixed", by=("address",))]
    untrusted = build_app(limiter_on(FakeClock()), limits)
    async with client(untrusted, peer="203.0.113.9") as c:
        assert (await c.get("/items", headers={"X-Forwarded-For": "1.1.1.1"})).status_code == 200
        # A new X-Forwarded-For is not a new client: the peer is the client.
        assert (await c.get("/items", headers={"X-Forwarded-For": "2.2.2.2"})).status_code == 429
    proxied = build_app(limiter_on(FakeClock()), limits, proxies=("10.0.0.0/8",))
    async with client(proxied, peer="10.1.2.3") as c:
        spoofed = "6.6.6.6, 1.1.1.1"  # the client wrote 6.6.6.6; our proxy saw 1.1.1.1
        assert (await c.get("/items", headers={"X-Forwarded-For": spoofed})).status_code == 200
        again = "7.7.7.7, 1.1.1.1"
        assert (await c.get("/items", headers={"X-Forwarded-For": again})).status_code == 429
        other = "1.1.1.1, 5.5.5.5, 10.9.9.9"  # through two of our proxies
        assert (await c.get("/items", headers={"X-Forwarded-For": other})).status_code == 200


def test_client_address_walks_past_every_trusted_hop() -> None:
    address = ClientAddress(["10.0.0.0/8", "192.168.1.1"])

    def scope(peer: str, forwarded: str) -> Scope:
        return {"client": (peer, 1), "headers": [(b"x-forwarded-for", forwarded.encode())]}

    assert address(scope("10.0.0.1", "8.8.8.8, 192.168.1.1")) == "8.8.8.8"
    assert address(scope("10.0.0.1", "10.0.0.2")) == "10.0.0.2"  # all trusted: the first
    assert address(scope("10.0.0.1", "not-an-ip")) == "10.0.0.1"
    assert address(scope("8.8.4.4", "1.2.3.4")) == "8.8.4.4"


async def test_headers_are_never_sent_twice_and_unlimited_routes_pass() -> None:
    limiter = limiter_on(FakeClock())
    login = RateLimit("login", 5, 60, "bucket", by=("address",), routes=("POST /login",))
    app = build_app(limiter, [login])
    async with client(app) as c:
        response = await c.post("/login")
        assert response.headers.get_list("ratelimit-limit") == ["1"]  # the app's own
        free = await c.get("/items")
    assert "ratelimit-limit" not in free.headers


async def test_the_middleware_lets_requests_through_when_the_store_fails() -> None:
    store = RedisRateLimitStore.from_url("redis://127.0.0.1:1/0", timeout=0.2)
    app = build_app(RateLimiter(store), [RateLimit("api", 1, 60, by=("address",))])
    async with client(app) as c:
        responses = [await c.get("/items") for _ in range(3)]
    await store.close()
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert "ratelimit-limit" not in responses[0].headers
