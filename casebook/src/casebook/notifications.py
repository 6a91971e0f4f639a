"""Outgoing notifications (SMS and e-mail) and the pluggable sender that delivers them.

A sender is called inside the send job's fenced transaction, so what it writes to the
database commits exactly once per message. The default :class:`OutboxSender` writes the
message to the ``outbox`` table (shown by ``GET /api/v1/outbox``); a real gateway sender
would call the provider with the job id as its idempotency key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from casebook.models import OutboxMessage

Channel = Literal["sms", "email"]


@dataclass(frozen=True, slots=True)
class Message:
    """One notification to one recipient."""

    organization_id: int
    channel: Channel
    recipient: str
    subject: str
    body: str
    job_id: int


class Sender(Protocol):
    """Delivers a message; ``session`` is the job's fenced transaction."""

    async def send(self, session: AsyncSession, message: Message) -> None: ...


class OutboxSender:
    """The default sender: one ``outbox`` row per message."""

    async def send(self, session: AsyncSession, message: Message) -> None:
        session.add(
            OutboxMessage(
                organization_id=message.organization_id,
                channel=message.channel,
                recipient=message.recipient,
                subject=message.subject,
                body=message.body,
                job_id=message.job_id,
            )
        )
