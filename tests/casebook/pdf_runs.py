"""Reading back the text of casebook's PDFs for tests, with the colours it is drawn in.

fpdf2 writes each page as one (zlib-compressed) content stream of ``(text) Tj`` runs with
core fonts. :func:`text_runs` interprets the few operators that matter — ``q``/``Q`` (save
and restore the graphics state), ``g``/``rg`` (the fill colour, which text is painted in
too), ``re`` followed by a fill or a stroke, ``Tj`` — and returns each run of text with its
text colour and the colour of the cell filled behind it last (white after an unfilled one).
Not a general PDF reader: enough for what casebook renders, and it fails loudly otherwise.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

RGB = tuple[float, float, float]
WHITE: RGB = (1.0, 1.0, 1.0)
BLACK: RGB = (0.0, 0.0, 0.0)

_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\nendstream", re.S)
_TOKEN = re.compile(rb"\((?:\\.|[^\\)])*\)|[^\s()]+", re.S)
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}


@dataclass(frozen=True)
class Run:
    text: str
    color: RGB
    background: RGB


def _unescape(literal: bytes) -> str:
    out = bytearray()
    i = 0
    while i < len(literal):
        byte = literal[i : i + 1]
        if byte != b"\\":
            out += byte
            i += 1
            continue
        nxt = literal[i + 1 : i + 2]
        octal = re.match(rb"[0-7]{1,3}", literal[i + 1 : i + 4])
        if octal:
            out.append(int(octal.group(), 8))
            i += 1 + len(octal.group())
        else:
            out += _ESCAPES.get(nxt, nxt)
            i += 2
    return out.decode("latin-1")


def content_streams(pdf: bytes) -> list[bytes]:
    """The page content streams (the decompressed streams that draw text)."""
    streams = []
    for match in _STREAM.finditer(pdf):
        try:
            data = zlib.decompress(match.group(1))
        except zlib.error:
            data = match.group(1)
        if b" Tj" in data or b"re " in data:
            streams.append(data)
    return streams


def text_runs(pdf: bytes) -> list[Run]:
    runs: list[Run] = []
    for stream in content_streams(pdf):
        color, background = BLACK, WHITE
        saved: list[RGB] = []
        operands: list[bytes] = []
        for token in _TOKEN.findall(stream):
            if token.startswith(b"(") or re.fullmatch(rb"-?[\d.]+|/\w+", token):
                operands.append(token)
                continue
            if token == b"q":
                saved.append(color)
            elif token == b"Q":
                color = saved.pop()
            elif token == b"g":
                color = (float(operands[-1]),) * 3  # type: ignore[assignment]
            elif token == b"rg":
                r, g, b = (float(x) for x in operands[-3:])
                color = (r, g, b)
            elif token in (b"f", b"F", b"B", b"b", b"f*", b"B*"):
                background = color
            elif token == b"S":
                background = WHITE
            elif token == b"Tj":
                runs.append(Run(_unescape(operands[-1][1:-1]), color, background))
            operands = []
    return runs


def pdf_text(pdf: bytes) -> str:
    """Every run of text, one per line, in drawing order."""
    return "\n".join(run.text for run in text_runs(pdf))


def contrast_ratio(first: RGB, second: RGB) -> float:
    """WCAG 2 contrast ratio of two colours given as 0..1 channels."""

    def luminance(rgb: RGB) -> float:
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    high, low = sorted((luminance(first), luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)
