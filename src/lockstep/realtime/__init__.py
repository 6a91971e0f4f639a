"""Realtime: lockstep serves the Centrifugo client protocol, fed by its own commits.

The official SDKs (centrifuge-js, centrifuge-python, the mobile ones) connect to
``/connection/websocket`` unchanged; ``/connection/uni_sse`` serves plain EventSource
clients. Publications come from declared broadcasts of table writes and from
``publish(session, channel, data)`` inside write transactions (sent iff they commit, in
commit order), or from outside transactions (job progress). Channels with history recover
exactly what a reconnecting client missed. See docs/realtime.md.
"""

from lockstep.realtime.capture import Broadcast, RowEvent, default_data
from lockstep.realtime.channels import (
    Authenticate,
    Authorize,
    ConnectRequest,
    Credentials,
    Namespace,
)
from lockstep.realtime.revisions import REALTIME_TABLES
from lockstep.realtime.server import Realtime

__all__ = [
    "REALTIME_TABLES",
    "Authenticate",
    "Authorize",
    "Broadcast",
    "ConnectRequest",
    "Credentials",
    "Namespace",
    "Realtime",
    "RowEvent",
    "default_data",
]
