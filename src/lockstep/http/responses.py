"""JSON responses serialized once, by orjson, straight to bytes.

``JSONBytesResponse`` is the fast path: return it from a handler (``return
JSONBytesResponse(rows)``) and FastAPI skips ``jsonable_encoder`` entirely. It also works as
a route's ``response_class``, but then FastAPI still runs its own encoder on the handler's
return value first (its serialization step, not ours).
"""

from __future__ import annotations

import pathlib
from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.responses import JSONResponse

# Keys like ints or UUIDs are written as strings, as jsonable_encoder does.
JSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def json_default(obj: Any) -> Any:
    """Encode what orjson does not know natively.

    pydantic models via ``model_dump(mode="json")``; ``Decimal`` as a string (exact, as
    pydantic does: a float would lose cents); sets as lists; paths as strings. Anything else
    raises ``TypeError`` (orjson reports it as ``orjson.JSONEncodeError``).
    """
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, set | frozenset):
        return list(obj)
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps(content: Any) -> bytes:
    """``content`` as compact JSON bytes (see :func:`json_default` for supported types).

    Raises ``orjson.JSONEncodeError`` (a ``TypeError``) for unsupported values.
    """
    return orjson.dumps(content, default=json_default, option=JSON_OPTIONS)


class JSONBytesResponse(JSONResponse):
    """``application/json`` response rendered with orjson.

    Accepts dicts, lists, pydantic models, dataclasses, datetimes, UUIDs, Decimals and
    enums, nested freely. ``bytes`` content is taken as already-serialized JSON and sent
    as is (the cheapest path for cached bodies). A subclass of Starlette's
    ``JSONResponse`` only so that FastAPI documents a route's ``response_model`` as its
    body when this is the route's response class; rendering is entirely ours.
    """

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return dumps(content)
