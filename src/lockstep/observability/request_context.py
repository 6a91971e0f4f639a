"""The id of the HTTP request being served, for log lines and error envelopes.

The HTTP layer binds the id for the duration of a request with :func:`bind_request_id` and
restores the previous state with :func:`reset_request_id`; meanwhile
:func:`current_request_id` returns it and the ``add_request_id`` logging processor puts it
on every log line. It is one ContextVar owned by lockstep: tasks started during the request
(background tasks, a ``TaskGroup``) and threads it hands work to (``run_in_threadpool``)
inherit it, other requests never see it, and application code calling
``structlog.contextvars.clear_contextvars()`` cannot lose it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token

_current: ContextVar[str | None] = ContextVar("lockstep_request_id", default=None)


# The ContextVar's own methods: reading, binding and resetting the id cost no Python call
# (the access log reads it on every request).
current_request_id: Callable[[], str | None] = _current.get
"""``current_request_id()``: the id of the request being served in this context, or
``None`` outside a request."""

bind_request_id: Callable[[str], Token[str | None]] = _current.set
"""``bind_request_id(request_id) -> token``: make ``request_id`` the current request id."""

reset_request_id: Callable[[Token[str | None]], None] = _current.reset
"""``reset_request_id(token)``: restore what was current before the bind that returned
``token``. Raises ``ValueError`` from another context than the bind's (an ASGI middleware
binds and resets in the same task, so this does not happen there)."""
