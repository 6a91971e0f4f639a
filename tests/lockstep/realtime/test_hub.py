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
    resubscribed: list[str] = field(default_factory=list)

    def push(self, publication: Publication) -> int:
        self.got.append(publication.offset)
        return 1

    def resubscribe(self, channel: str) -> None:
        self.resubscribed.append(channel)

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
