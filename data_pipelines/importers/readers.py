"""File readers that turn every parse failure into a FileFormatError with a position.

A position is ``line L column C`` (JSON/XML/CSV) or ``byte N (line L)`` (UTF-8), so a user
can open the file at the offending spot instead of reading a traceback.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import pathlib
import xml.etree.ElementTree as ET
from typing import Any

from data_pipelines.importers.base import FileFormatError

_SNIPPET = 80


def _snippet(s: str, pos: int) -> str:
    return s[max(0, pos - _SNIPPET) : pos + _SNIPPET]


def read_text(path: pathlib.Path) -> str:
    """Decodes a file as UTF-8 (a BOM is tolerated); bad bytes give the byte offset."""
    data = pathlib.Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise FileFormatError(
            path,
            f"byte {e.start} (line {line})",
            f"invalid UTF-8: {e.reason} (byte 0x{data[e.start]:02x})",
            data[max(0, e.start - 40) : e.start + 40].decode("utf-8", "replace"),
        ) from None


def load_json(path: pathlib.Path) -> Any:
    """Parses one JSON document; truncated or malformed JSON names line and column."""
    s = read_text(path)
    try:
        return json.loads(s)
    except json.JSONDecodeError as e:
        raise FileFormatError(
            path, f"line {e.lineno} column {e.colno}", f"malformed JSON: {e.msg}", _snippet(s, e.pos)
        ) from None


@dataclasses.dataclass(frozen=True)
class LineError:
    """A JSON-lines line that does not parse; it becomes one record-level BadRecord."""

    reason: str
    raw: str


def load_json_lines(path: pathlib.Path) -> list[tuple[int, Any]]:
    """``(line number, object | LineError)`` for every non-blank line.

    One broken line does not poison a 100k-line file, so it is reported per line.
    """
    s = read_text(path)
    out: list[tuple[int, Any]] = []
    # split on "\n" only: str.splitlines() would also break inside strings at U+2028, U+0085...
    for i, line in enumerate(s.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            out.append((i, json.loads(line)))
        except json.JSONDecodeError as e:
            out.append((i, LineError(f"malformed JSON at column {e.colno}: {e.msg}", line[:200])))
    return out


def load_json_array_or_lines(path: pathlib.Path) -> list[tuple[str, Any]]:
    """A JSON array (``[`` first) or JSON lines; returns ``(location, item)`` pairs."""
    s = read_text(path)
    if s.lstrip().startswith("["):
        data = load_json(path)
        return [(f"record {i}", x) for i, x in enumerate(data)]
    return [(f"line {i}", x) for i, x in load_json_lines(path)]


def read_csv(
    path: pathlib.Path, *, header: bool, ncols: int | None = None
) -> tuple[list[str] | None, list[tuple[int, list[str]]]]:
    """Reads a CSV strictly: every row must have the header's (or ``ncols``) column count.

    Returns ``(header or None, [(first line of the record, row), ...])``. Multi-line quoted
    fields are fine; the line number is where the record starts.
    """
    s = read_text(path)
    # StringIO(newline="") splits records on \r/\n only, like open(newline="") (not U+2028).
    reader = csv.reader(io.StringIO(s, newline=""), strict=True)
    rows: list[tuple[int, list[str]]] = []
    head: list[str] | None = None
    prev_end = 0
    try:
        for row in reader:
            start = prev_end + 1
            prev_end = reader.line_num
            if not row:  # blank line
                continue
            if header and head is None:
                head = row
                ncols = len(row)
                continue
            if ncols is not None and len(row) != ncols:
                raise FileFormatError(
                    path,
                    f"line {start} (record {len(rows) + 1})",
                    f"CSV row has {len(row)} columns, expected {ncols}",
                    ",".join(row)[:200],
                )
            rows.append((start, row))
    except csv.Error as e:
        raise FileFormatError(path, f"line {reader.line_num}", f"malformed CSV: {e}") from None
    return head, rows


def parse_xml(path: pathlib.Path) -> ET.Element:
    """Parses an XML file (stdlib; no entity expansion from the network)."""
    s = read_text(path)
    try:
        return ET.fromstring(s)
    except ET.ParseError as e:
        line, col = e.position
        raise FileFormatError(path, f"line {line} column {col + 1}", f"malformed XML: {e}") from None
