"""lockstep's Python client (on httpx): token refresh, retries with backoff and jitter,
coalesced GETs, an ETag cache, several servers with balancing and failover, an offline
outbox of mutations, and shape subscriptions. It imports nothing of lockstep's server side.
See docs/client.md.
"""

from lockstep.client.client import Backoff, Client, retry_after, should_retry
from lockstep.client.outbox import FlushReport, Outbox
from lockstep.client.shapes import Shape

__all__ = [
    "Backoff",
    "Client",
    "FlushReport",
    "Outbox",
    "Shape",
    "retry_after",
    "should_retry",
]
