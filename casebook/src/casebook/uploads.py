"""Receiving one file of a ``multipart/form-data`` request as it streams in.

The body is parsed chunk by chunk (python-multipart's push parser) and the file part is
written straight to a :class:`~lockstep.SpoolWriter` (hashed, size-checked, encoding
detected on the way): the file is never held in memory, and an upload over the limit is
refused as soon as the limit is crossed, not after it has been received.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from lockstep import BadRequestError, Spool, SpoolWriter

# A text field beside the file is small (a description): more than this is refused.
MAX_TEXT_FIELD_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Upload:
    """A received file: the name its client gave (unsanitized: never a path), the media
    type its part declared (unchecked), its spool, and the text fields asked for."""

    filename: str
    content_type: str
    spool: Spool
    fields: dict[str, str] = dataclass_field(default_factory=dict)


async def receive_file(
    request: Request, *, field: str, max_bytes: int, directory: Path
) -> tuple[str, Spool]:
    """The uploaded file of form field ``field``: its name and its spool (caller discards).

    Raises BadRequestError (not multipart, a body that is not valid multipart, no such
    file field) or PayloadTooLargeError.
    """
    upload = await receive_upload(request, field=field, max_bytes=max_bytes, directory=directory)
    return Path(upload.filename).name or "upload.csv", upload.spool


async def receive_upload(
    request: Request,
    *,
    field: str,
    max_bytes: int,
    directory: Path,
    text_fields: Iterable[str] = (),
) -> Upload:
    """The uploaded file of form field ``field`` and the ``text_fields`` sent beside it
    (UTF-8; the caller discards the spool).

    Raises BadRequestError (not multipart, a body that is not valid multipart, no such
    file field, a text field over :data:`MAX_TEXT_FIELD_BYTES`) or PayloadTooLargeError.
    """
    wanted_text = frozenset(text_fields)
    texts: dict[str, bytearray] = {}
    content_type, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise BadRequestError(f"send the file as multipart/form-data, in a field named {field!r}")
    headers: dict[bytes, bytes] = {}
    current: dict[str, bytes] = {"field": b"", "value": b""}
    state: dict[str, object] = {
        "writer": None, "filename": None, "spool": None, "type": b"", "text": None
    }  # fmt: skip

    def on_part_begin() -> None:
        headers.clear()
        state["text"] = None

    def on_header_field(data: bytes, start: int, end: int) -> None:
        current["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        current["value"] += data[start:end]

    def on_header_end() -> None:
        headers[current["field"].lower()] = current["value"]
        current["field"], current["value"] = b"", b""

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(headers.get(b"content-disposition"))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename")
        if name == field and filename is not None and state["spool"] is None:
            state["filename"] = filename.decode("utf-8", "replace")
            state["type"] = headers.get(b"content-type", b"")
            state["writer"] = SpoolWriter(max_bytes=max_bytes, directory=directory)
        elif name in wanted_text and filename is None and name not in texts:
            state["text"] = texts.setdefault(name, bytearray())

    def on_part_data(data: bytes, start: int, end: int) -> None:
        writer = state["writer"]
        if isinstance(writer, SpoolWriter):
            writer.write(data[start:end])
        text = state["text"]
        if isinstance(text, bytearray):
            text += data[start:end]
            if len(text) > MAX_TEXT_FIELD_BYTES:
                raise BadRequestError(
                    f"a form field is longer than {MAX_TEXT_FIELD_BYTES} bytes",
                    details={"max_bytes": MAX_TEXT_FIELD_BYTES},
                )

    def on_part_end() -> None:
        writer = state["writer"]
        if isinstance(writer, SpoolWriter):
            state["spool"] = writer.finish()
            state["writer"] = None

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        try:
            async for chunk in request.stream():
                parser.write(chunk)
            parser.finalize()
        except MultipartParseError as exc:
            raise BadRequestError(f"the body is not valid multipart/form-data: {exc}") from None
    except BaseException:
        writer = state["writer"]
        if isinstance(writer, SpoolWriter):
            writer.abort()
        spool = state["spool"]
        if isinstance(spool, Spool):
            spool.discard()
        raise
    spool = state["spool"]
    if not isinstance(spool, Spool):
        raise BadRequestError(f"no file in the form field {field!r}")
    declared = state["type"]
    return Upload(
        filename=str(state["filename"]),
        content_type=declared.decode("latin-1") if isinstance(declared, bytes) else "",
        spool=spool,
        fields={name: value.decode("utf-8", "replace") for name, value in texts.items()},
    )
