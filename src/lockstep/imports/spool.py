"""An uploaded file, spooled to disk as it streams in: hashed, size-limited, its text encoding
decided on the way, never held in memory whole.

Encoding: a byte-order mark decides (UTF-8, UTF-16, UTF-32). Otherwise the bytes are fed to
an incremental strict UTF-8 decoder while they arrive; a file that is not valid UTF-8 is
read as Windows-1252 (what spreadsheet exports on Windows produce) when it uses no byte
undefined there, else as Latin-1 (which decodes any byte). Pure ASCII is UTF-8.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lockstep.exceptions import PayloadTooLargeError

CHUNK = 1 << 16

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_NOT_CP1252 = (b"\x81", b"\x8d", b"\x8f", b"\x90", b"\x9d")


@dataclass(frozen=True, slots=True)
class Spool:
    """A complete file on disk. ``owned``: the file is a temp file of ours, deleted by
    :meth:`discard`."""

    path: Path
    sha256: str
    size: int
    encoding: str
    owned: bool = True

    def open_binary(self) -> IO[bytes]:
        return self.path.open("rb")

    def discard(self) -> None:
        if self.owned:
            self.path.unlink(missing_ok=True)

    @classmethod
    def of_path(cls, path: str | Path, *, max_bytes: int | None = None) -> Spool:
        """A file already on disk (the CLI): read once to hash it and decide its encoding."""
        writer = SpoolWriter(max_bytes=max_bytes, copy=False)
        with Path(path).open("rb") as source:
            while chunk := source.read(CHUNK):
                writer.write(chunk)
        return writer.finish(path=Path(path))


class SpoolWriter:
    """Receives a file chunk by chunk (``write``), then ``finish`` gives the :class:`Spool`.

    Raises :class:`~lockstep.exceptions.PayloadTooLargeError` as soon as more than
    ``max_bytes`` arrived (the partial file is deleted).
    """

    def __init__(
        self,
        *,
        max_bytes: int | None = None,
        directory: str | Path | None = None,
        copy: bool = True,
    ) -> None:
        self.max_bytes = max_bytes
        self._hash = hashlib.sha256()
        self.size = 0
        self._head = b""
        self._utf8: Any = codecs.getincrementaldecoder("utf-8")("strict")
        self._is_utf8 = True
        self._is_cp1252 = True
        self._path: Path | None = None
        self._file: IO[bytes] | None = None
        if copy:  # else only hash and inspect (the file is on disk already)
            if directory is not None:
                Path(directory).mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix="lockstep-upload-", suffix=".csv", dir=directory)
            self._path = Path(name)
            self._file = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        if self.max_bytes is not None and self.size > self.max_bytes:
            self.abort()
            raise PayloadTooLargeError(
                f"the file is larger than the {self.max_bytes // (1 << 20)} MiB allowed",
                details={"max_bytes": self.max_bytes},
            )
        self._hash.update(chunk)
        if len(self._head) < 4:
            self._head += chunk[: 4 - len(self._head)]
        if self._is_utf8:
            try:
                self._utf8.decode(chunk)
            except UnicodeDecodeError:
                self._is_utf8 = False
        if self._is_cp1252 and any(b in chunk for b in _NOT_CP1252):
            self._is_cp1252 = False
        if self._file is not None:
            self._file.write(chunk)

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)

    def finish(self, *, path: Path | None = None) -> Spool:
        if self._is_utf8:
            try:
                self._utf8.decode(b"", final=True)  # a sequence cut off at the end
            except UnicodeDecodeError:
                self._is_utf8 = False
        if self._file is not None:
            self._file.close()
            self._file = None
        where = path or self._path
        if where is None:
            raise ValueError("nothing was spooled")
        return Spool(
            path=where,
            sha256=self._hash.hexdigest(),
            size=self.size,
            encoding=self._encoding(),
            owned=path is None,
        )

    def _encoding(self) -> str:
        for bom, name in _BOMS:
            if self._head.startswith(bom):
                return name
        if self._is_utf8:
            return "utf-8"
        return "cp1252" if self._is_cp1252 else "latin-1"


class CountingReader(io.RawIOBase):
    """A binary file that counts the bytes read through it (progress of a text reader)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.position += n
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()
