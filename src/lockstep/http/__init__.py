"""Pure-ASGI HTTP layer: request ids, the error envelope, security headers, metrics, probes.

Most apps need only :func:`install_observability`; the pieces are public for apps that
assemble their own stack.
"""

from lockstep.http.errors import (
    CatchAllMiddleware,
    error_body,
    error_code_for_status,
    error_response,
    install_error_handlers,
)
from lockstep.http.limits import RequestLimitsMiddleware
from lockstep.http.metrics import MetricsMiddleware
from lockstep.http.observability import ObservabilityMiddleware
from lockstep.http.openapi import (
    error_responses,
    file_response,
    install_openapi,
    openapi_links,
    unbounded_integers,
)
from lockstep.http.probes import probe_routes
from lockstep.http.request_id import RequestIdMiddleware, current_request_id
from lockstep.http.responses import JSONBytesResponse
from lockstep.http.route_template import UNMATCHED, RouteTemplates
from lockstep.http.security import SecurityHeadersMiddleware, security_headers
from lockstep.http.stack import Observability, install_observability

__all__ = [
    "UNMATCHED",
    "CatchAllMiddleware",
    "JSONBytesResponse",
    "MetricsMiddleware",
    "Observability",
    "ObservabilityMiddleware",
    "RequestIdMiddleware",
    "RequestLimitsMiddleware",
    "RouteTemplates",
    "SecurityHeadersMiddleware",
    "current_request_id",
    "error_body",
    "error_code_for_status",
    "error_response",
    "error_responses",
    "file_response",
    "install_error_handlers",
    "install_observability",
    "install_openapi",
    "openapi_links",
    "probe_routes",
    "security_headers",
    "unbounded_integers",
]
