"""lockstep's Python client (on httpx): token refresh, retries with backoff and jitter,
coalesced GETs, an ETag cache, several servers with balancing and failover, an offline
outbox of mutations, shape subscriptions and sync scopes. It imports nothing of lockstep's
server side. See docs/client.md.
"""

from lockstep.client.client import Backoff, Client, retry_after, should_retry
from lockstep.client.outbox import FlushReport, Outbox
from lockstep.client.scopes import Progress, ScopeSync
from lockstep.client.shapes import Shape

__all__ = [
    "Backoff",
    "Client",
    "FlushReport",
    "Outbox",
    "Progress",
    "ScopeSync",
    "Shape",
    "retry_after",
    "should_retry",
]
