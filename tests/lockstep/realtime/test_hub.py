"""The hub's ordering and gap filling, with stand-in connections: no server, no database."""

from __future__ import annotations

from dataclasses import dataclass, field

from lockstep.realtime.hub import Hub, Subscriber
from lockstep.realtime.metrics import RealtimeMetrics
from lockstep.realtime.protocol import Publication


@dataclass(eq=False)
class Client:
    user: str = "u"
    got: list[int] = field(default_factory=list)
    pushes: list[list[int]] = field(default_factory=list)  # what each push carried
    resubscribed: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def push(self, publications: list[Publication]) -> int:
        self.got.extend(p.offset for p in publications)
        self.pushes.append([p.offset for p in publications])
        self.events.append(f"push {self.pushes[-1]}")
        return len(publications)

    def resubscribe(self, channel: str) -> None:
        self.resubscribed.append(channel)
        self.events.append(f"resubscribe {channel}")

    def slow(self) -> None:
        raise AssertionError("not slow")


def pub(offset: int) -> Publication:
    return Publication("c", b"1", offset, "e")


def hub_with(history: dict[int, Publication]) -> tuple[Hub, list[tuple[int, int]]]:
    asked: list[tuple[int, int]] = []

    async def fetch(channel: str, after: int, upto: int) -> list[Publication]:
        asked.append((after, upto))
        return [history[o] for o in range(after + 1, upto + 1) if o in history]

    return Hub(RealtimeMetrics(), fetch), asked


def live(hub: Hub, client: Client, position: int) -> Subscriber:
    subscriber = Subscriber(client)  # type: ignore[arg-type]
    hub.add("c", subscriber)
    hub.subscribed("c", subscriber, position)
    return subscriber


async def test_in_order_once_and_a_lost_message_comes_from_history() -> None:
    hub, asked = hub_with({3: pub(3), 4: pub(4)})
    client = Client()
    live(hub, client, 1)
    for offset in (2, 2, 1, 5, 4, 6):  # a duplicate, an old one, then 3 and 4 were lost
        await hub.deliver(pub(offset))
    assert client.got == [2, 3, 4, 5, 6]
    assert asked == [(2, 4)]


async def test_a_gap_history_lost_makes_subscribers_resubscribe() -> None:
    hub, _ = hub_with({})
    client = Client()
    live(hub, client, 1)
    await hub.deliver(pub(2))
    await hub.deliver(pub(9))
    assert client.got == [2]
    assert client.resubscribed == ["c"]


async def test_a_subscriber_buffers_while_subscribing_then_replays_past_its_position() -> None:
    hub, _ = hub_with({})
    early, late = Client(), Client()
    live(hub, early, 3)
    subscribing = Subscriber(late)  # type: ignore[arg-type]
    hub.add("c", subscribing)
    await hub.deliver(pub(4))
    await hub.deliver(pub(5))
    assert late.got == []
    hub.subscribed("c", subscribing, 4)  # its history read went up to 4
    assert late.got == [5]
    assert early.got == [4, 5]


async def test_what_queued_meanwhile_goes_to_each_subscriber_in_one_push_in_order() -> None:
    hub, asked = hub_with({})
    first, second = Client(), Client()
    live(hub, first, 1)
    live(hub, second, 1)
    hub.start()
    try:
        for offset in (2, 3, 4):  # three commits before the hub's task runs
            hub.submit([pub(offset)])
        hub.submit([Publication("other", b"1", 1, "e")])  # nobody there: skipped
        await hub.idle()
    finally:
        await hub.stop()
    assert first.pushes == [[2, 3, 4]]
    assert second.pushes == [[2, 3, 4]]
    assert hub.metrics.delivered._value.get() == 6
    assert asked == []


async def test_a_group_skips_what_a_subscriber_has_and_sends_it_the_rest() -> None:
    hub, _ = hub_with({})
    behind, ahead = Client(), Client()
    live(hub, behind, 1)
    live(hub, ahead, 3)  # its subscribe read history up to 3
    await hub.deliver_all([pub(2), pub(3), pub(4), pub(5)])
    assert behind.pushes == [[2, 3, 4, 5]]
    assert ahead.pushes == [[4, 5]]


async def test_a_gap_in_a_burst_sends_what_came_before_then_fills_from_history() -> None:
    hub, asked = hub_with({4: pub(4)})
    client = Client()
    live(hub, client, 1)
    await hub.deliver_all([pub(2), pub(3), pub(5), pub(6)])  # 4 was lost on its way
    assert client.pushes == [[2, 3], [4], [5, 6]]
    assert asked == [(3, 4)]


async def test_a_subscriber_behind_a_group_resubscribes_after_what_it_could_take() -> None:
    hub, _ = hub_with({})
    client = Client()
    subscriber = live(hub, client, 2)
    subscriber.position = 0  # as if it had missed offsets 1 and 2 (never happens live)
    await hub.deliver_all([pub(3), pub(4)])
    assert client.events == ["resubscribe c"]


async def test_a_replayed_buffer_is_checked_publication_by_publication() -> None:
    hub, _ = hub_with({})
    client = Client()
    subscribing = Subscriber(client, buffer=[pub(5), pub(5), pub(7)])  # type: ignore[arg-type]
    hub.add("c", subscribing)
    hub.subscribed("c", subscribing, 4)  # a duplicate, then a gap: what it can take, then anew
    assert client.events == ["push [5]", "resubscribe c"]
