"""An OpenAPI document that tells the truth about errors, limits and binary bodies.

FastAPI documents a 422 with its own ``HTTPValidationError`` (the body is lockstep's
envelope), no other error, and nothing of what middleware answers. :func:`install_openapi`
post-processes the app's document once, when it is first built:

* one ``Error`` schema (the envelope) is the body of **every** 4xx/5xx response, whatever
  declared it; FastAPI's validation schemas are removed;
* every operation documents what the stack can answer before or around it: 400 (a NUL
  byte in the URL), 431 (headers too large), 413 and 422 (with a body or parameters), 404
  (with path parameters), 401 (with a security requirement), 429 (when rate limits are
  installed) and 503 with ``Retry-After`` (database unavailable, a full queue);
* routes add their own (403, 409, 412, …) with :func:`error_responses` in ``responses=``,
  files with :func:`file_response`, and OpenAPI links (what a create leads to, so
  schemathesis walks create → read → update → delete) with :func:`openapi_links`;
* :func:`unbounded_integers` lists integer parameters and fields without both bounds (every
  one can reach a column: bound it by the column's type).

The document is computed once and cached by FastAPI as before; requests never pay for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI

from lockstep.http.errors import STATUS_CODES

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "description": "The one error envelope: every error response has this body.",
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "request_id", "details"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string", "description": "stable, machine-readable"},
                "message": {"type": "string", "description": "for people"},
                "request_id": {"type": ["string", "null"]},
                "details": {"description": "code-specific, or null"},
            },
        }
    },
}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 0},
    }
}
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for the error statuses a route answers itself (the envelope
    is filled in by :func:`install_openapi`)."""
    return {status: {"description": _describe(status)} for status in statuses}


def file_response(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    """A ``responses=`` entry for a 200 whose body is a file of ``media_type``."""
    schema = {"type": "string", "format": "binary"}
    return {200: {"description": description, "content": {media_type: {"schema": schema}}}}


def openapi_links(parameter: str, *operation_ids: str, field: str = "id") -> dict[str, Any]:
    """Links from a response to operations taking its ``field`` as their ``parameter``
    (for ``responses={201: {"description": ..., "links": ...}}``)."""
    value = f"$response.body#/{field}"
    return {op: {"operationId": op, "parameters": {parameter: value}} for op in operation_ids}


def install_openapi(app: FastAPI, *, rate_limited: bool = False) -> None:
    """Make ``app.openapi()`` return the corrected document (see the module)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _correct(document, rate_limited=rate_limited)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _correct(document: dict[str, Any], *, rate_limited: bool) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Error"] = ERROR_SCHEMA
    for path, _method, operation in _operations(document):
        responses = operation.setdefault("responses", {})
        parameters = operation.get("parameters", [])
        wanted = {400, 431, 503}
        if operation.get("requestBody"):
            wanted |= {413, 422}
        if parameters:
            wanted.add(422)
        if "{" in path:
            wanted.add(404)
        if operation.get("security"):
            wanted.add(401)
        if rate_limited:
            wanted.add(429)
        for status in wanted:
            responses.setdefault(str(status), {"description": _describe(status)})
        for status, response in responses.items():
            content = response.get("content", {})
            if len(content) > 1:
                # A file route's declared media type, beside the JSON FastAPI assumes for
                # the route's default response class with no model (an empty schema).
                response["content"] = {m: v for m, v in content.items() if v.get("schema")}
            if status.isdigit() and int(status) >= 400:
                response["content"] = {"application/json": {"schema": _ERROR_REF}}
                if int(status) in (429, 503):
                    response.setdefault("headers", {}).update(_RETRY_AFTER)


def _operations(document: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            if method in item:
                yield path, method, item[method]


def _describe(status: int) -> str:
    code = STATUS_CODES.get(status)
    phrase = HTTPStatus(status).phrase
    return f"{phrase} (error code `{code}`)" if code else phrase


def unbounded_integers(document: Mapping[str, Any]) -> list[str]:
    """Where the document accepts an integer without both ``minimum`` and ``maximum``
    (parameters and request bodies, ``$ref``s followed): each names the operation and the
    place. Empty when every integer input is bounded."""
    schemas = document.get("components", {}).get("schemas", {})
    found: list[str] = []
    for path, method, operation in _operations(document):
        where = f"{method.upper()} {path}"
        for parameter in operation.get("parameters", []):
            _walk(parameter.get("schema", {}), schemas, f"{where} {parameter['name']}", found)
        for media in operation.get("requestBody", {}).get("content", {}).values():
            _walk(media.get("schema", {}), schemas, f"{where} body", found)
    return found


def _walk(schema: Any, schemas: Mapping[str, Any], where: str, found: list[str]) -> None:
    if not isinstance(schema, Mapping):
        return
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        _walk(schemas.get(name, {}), schemas, f"{where}.{name}", found)
        return
    if schema.get("type") == "integer" and ("minimum" not in schema or "maximum" not in schema):
        found.append(where)
    for key in ("anyOf", "oneOf", "allOf"):
        for part in schema.get(key, []):
            _walk(part, schemas, where, found)
    for name, sub in schema.get("properties", {}).items():
        _walk(sub, schemas, f"{where}.{name}", found)
    if "items" in schema:
        _walk(schema["items"], schemas, f"{where}[]", found)
