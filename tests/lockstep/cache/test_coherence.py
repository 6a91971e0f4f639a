"""What a stamp mirror flushes, applies or ignores, and when it trusts itself: the pure
decisions, without servers (a Redis client that is never connected stands in for Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from lockstep.cache import CacheMetrics, CircuitBreaker, MirroredStampStore, RedisStampStore
from lockstep.cache.coherence import decide
from lockstep.changes import consistency_scope
from lockstep.testing import FakeClock

G = "gen1"


@pytest.mark.parametrize(
    ("state", "message", "expected"),
    [
        # (generation, last_seq, floor), message -> (action, reason)
        ((G, 5, None), {"gen": G, "seq": 6, "keys": ["a"]}, ("apply", "")),
        ((G, 5, None), {"gen": G, "seq": 8, "keys": ["a"]}, ("flush", "gap")),
        # DEL of the sequence under the same generation: it restarts low
        ((G, 5, None), {"gen": G, "seq": 1, "keys": ["a"]}, ("flush", "backwards")),
        ((G, 5, None), {"gen": G, "seq": 5, "keys": ["a"]}, ("flush", "backwards")),
        # the clock was deleted, flushed or evicted; Redis restarted (old snapshot); a reset
        ((G, 5, None), {"gen": "gen2", "seq": 1, "keys": ["a"]}, ("flush", "generation")),
        ((G, 5, None), {"gen": "gen2", "seq": 9, "flush": True}, ("flush", "generation")),
        ((G, 5, None), {"seq": 6, "keys": ["a"]}, ("flush", "generation")),  # no generation
        ((None, None, None), {"gen": G, "seq": 6, "keys": ["a"]}, ("flush", "generation")),
        ((G, 5, None), {"gen": G, "seq": 6, "flush": True, "reason": "stall"}, ("flush", "stall")),
        # published between SUBSCRIBE and reading the position: already reflected
        ((G, 5, 5), {"gen": G, "seq": 4, "keys": ["a"]}, ("ignore", "before_subscription")),
        ((G, 5, 5), {"gen": G, "seq": 5, "keys": ["a"]}, ("ignore", "before_subscription")),
        ((G, 5, 5), {"gen": G, "seq": 6, "keys": ["a"]}, ("apply", "")),
        # once past the floor, going back is a reset of the sequence again
        ((G, 7, None), {"gen": G, "seq": 5, "keys": ["a"]}, ("flush", "backwards")),
        # stamps deleted because Redis refused the bump (no sequence number was taken)
        ((G, 5, None), {"keys": ["a"]}, ("apply", "unsequenced")),
    ],
)
def test_decide(state: tuple[Any, ...], message: dict[str, Any], expected: tuple[str, str]) -> None:
    assert decide(*state, message) == expected


class Harness:
    """A mirror whose channel is driven by hand: no subscription, a fake clock."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.redis = Redis.from_url("redis://127.0.0.1:1/0")  # never connected
        self.breaker = CircuitBreaker(clock=self.clock)
        self.remote = RedisStampStore(self.redis, timeout=0.5, lease=0.25, breaker=self.breaker)
        self.metrics = CacheMetrics()
        self.l1_flushes = 0
        self.mirror = MirroredStampStore(
            self.remote, metrics=self.metrics, clock=self.clock, on_flush=self.flushed
        )
        self.remote_reads: list[tuple[tuple[str, ...], int]] = []

        async def read_with_seq(keys: Any, *, confirm: int = 0) -> Any:
            self.remote_reads.append((tuple(keys), confirm))
            from lockstep.cache import StampSnapshot

            return StampSnapshot(G, tuple(f"{k}-remote" for k in keys)), 5

        self.remote.read_with_seq = read_with_seq  # type: ignore[method-assign]

    def flushed(self) -> None:
        self.l1_flushes += 1

    def live(self, seq: int = 5) -> None:
        self.mirror._go_live(G, seq, self.clock())

    def flushes(self, reason: str) -> float:
        return self.metrics.flushes.labels(reason)._value.get()


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = Harness()
    yield harness
    await harness.redis.aclose()


async def test_reads_are_served_from_the_mirror_only_within_the_lease(h: Harness) -> None:
    h.live()
    await h.mirror.read(["a"])  # a miss: read from Redis, kept
    assert len(h.remote_reads) == 1
    assert (await h.mirror.read(["a"])).values == ("a-remote",)
    assert len(h.remote_reads) == 1  # from the mirror
    h.clock.advance(0.25)  # no PONG for a whole lease: the channel may be frozen
    assert not h.mirror.trusted
    await h.mirror.read(["a"])
    assert len(h.remote_reads) == 2


async def test_an_open_breaker_or_a_failed_bump_stops_trust(h: Harness) -> None:
    h.live()
    assert h.mirror.trusted
    h.breaker.trip()
    assert not h.mirror.trusted
    h.breaker.succeeded()
    assert h.mirror.trusted
    h.remote.needs_reset = True
    assert not h.mirror.trusted


async def test_a_token_not_seen_here_reads_redis_and_asks_for_confirmation(h: Harness) -> None:
    h.live()
    await h.mirror.read(["a"])
    with consistency_scope(min_change=42):
        await h.mirror.read(["a"])
    assert h.remote_reads[-1] == (("a",), 42)
    h.mirror.apply({"gen": G, "seq": 6, "change": 42, "keys": ["b"]})
    with consistency_scope(min_change=42):
        await h.mirror.read(["a"])
    assert len(h.remote_reads) == 2  # seen here: the mirror answers


async def test_authoritative_reads_skip_the_mirror(h: Harness) -> None:
    h.live()
    await h.mirror.read(["a"])
    await h.mirror.read(["a"], authoritative=True)
    assert len(h.remote_reads) == 2


async def test_a_reset_sequence_flushes_mirror_and_l1(h: Harness) -> None:
    """The issue's first case: the sequence restarts at 1 and must not be ignored."""
    h.live(seq=40)
    h.mirror.apply({"gen": G, "seq": 41, "keys": ["b"]})
    await h.mirror.read(["a"])
    before = h.l1_flushes
    h.mirror.apply({"gen": G, "seq": 1, "keys": ["zzz"]})
    assert h.l1_flushes == before + 1
    assert h.flushes("backwards") == 1
    await h.mirror.read(["a"])
    assert len(h.remote_reads) == 2  # the mirror was emptied
    # and it follows the new sequence from there
    h.mirror.apply({"gen": G, "seq": 2, "keys": ["a"]})
    assert h.mirror.last_seq == 2
    assert h.flushes("gap") == 0


async def test_a_new_generation_flushes_and_is_adopted(h: Harness) -> None:
    h.live()
    h.mirror.apply({"gen": "gen2", "seq": 1, "flush": True, "reason": "lost"})
    assert h.mirror.generation == "gen2"
    assert h.flushes("generation") == 1
    # Values read under the old generation are not kept any more.
    await h.mirror.read(["a"])
    await h.mirror.read(["a"])
    assert len(h.remote_reads) == 2


async def test_a_read_overtaken_by_a_message_is_not_kept(h: Harness) -> None:
    h.live()
    original = h.remote.read_with_seq

    async def racing(keys: Any, *, confirm: int = 0) -> Any:
        result = await original(keys, confirm=confirm)
        h.mirror.apply({"gen": G, "seq": 6, "keys": ["a"]})  # lands while the read is out
        return result

    h.remote.read_with_seq = racing  # type: ignore[method-assign]
    await h.mirror.read(["a"])
    h.remote.read_with_seq = original  # type: ignore[method-assign]
    await h.mirror.read(["a"])
    assert len(h.remote_reads) == 2


async def test_unsequenced_deletions_drop_their_keys_only(h: Harness) -> None:
    h.live()
    await h.mirror.read(["a", "b"])
    flushes = h.l1_flushes
    h.mirror.apply({"keys": ["a"]})
    assert h.l1_flushes == flushes
    assert h.mirror.last_seq == 5  # the sequence is untouched
    await h.mirror.read(["b"])
    assert len(h.remote_reads) == 1
    await h.mirror.read(["a"])
    assert len(h.remote_reads) == 2


async def test_messages_are_counted_for_observers(h: Harness) -> None:
    h.live()
    h.mirror.apply({"gen": G, "seq": 6, "keys": ["a"]})
    h.mirror.apply({"gen": G, "seq": 9, "keys": ["a"]})
    await h.mirror.wait_received(2)
    assert h.metrics.messages.labels("apply")._value.get() == 1
    assert h.metrics.messages.labels("flush")._value.get() == 1
