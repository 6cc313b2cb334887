"""File readers that split a file into records and fail per record, not per file.

Line-oriented formats (JSON lines, CSV) and JSON arrays are split into records *before*
parsing, so a bad line, row, element or byte sequence becomes one :class:`LineError` entry
and the rest of the file is kept. Only input that cannot be split into records at all
(a malformed JSON document or XML tree, a bad CSV header) raises :class:`FileFormatError`,
whose position is ``line L column C`` (JSON/XML/CSV) or ``byte N (line L)`` (UTF-8).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import pathlib
import re
import xml.etree.ElementTree as ET
from typing import Any, Callable, Iterator

from data_pipelines.importers.base import FileFormatError

_SNIPPET = 80
RAW_EXCERPT = 500  # characters of a bad record kept in the quarantine (bounded for huge lines)
MAX_JSON_DEPTH = 64  # deeper JSON is hostile or broken; json.loads would hit RecursionError
_BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark, tolerated at the start of a file
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # undecodable bytes under errors="surrogateescape"


def _snippet(s: str, pos: int) -> str:
    return s[max(0, pos - _SNIPPET) : pos + _SNIPPET]


@dataclasses.dataclass(frozen=True)
class LineError:
    """One record (line, CSV row, array element) that cannot be parsed; it becomes one
    record-level BadRecord. ``field`` names the column when one is known."""

    reason: str
    raw: str
    field: str = "<line>"


def read_text(path: pathlib.Path) -> str:
    """Decodes a whole-document file as UTF-8 (a BOM is tolerated); bad bytes give the byte
    offset. For formats that can only be parsed as a whole (a JSON object, XML)."""
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


def read_text_lenient(path: pathlib.Path) -> str:
    """UTF-8 with undecodable bytes kept as lone surrogates (``surrogateescape``), so the
    record that holds them can be found and quarantined after the file is split."""
    data = pathlib.Path(path).read_bytes()
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    return data.decode("utf-8", "surrogateescape")


def bad_bytes(s: str) -> str | None:
    """The reason a split-off piece of :func:`read_text_lenient` text is not UTF-8, or None."""
    m = _ESCAPED_BYTE.search(s)
    if m is None:
        return None
    return f"invalid UTF-8: byte 0x{ord(m.group()) - 0xDC00:02x} at column {m.start() + 1}"


def excerpt(s: str) -> str:
    """A bounded, writable excerpt: escaped bytes shown as U+FFFD."""
    return _ESCAPED_BYTE.sub("\ufffd", s[:RAW_EXCERPT])


def parse_json_value(s: str) -> Any:
    """``json.loads`` of one record; every failure is a LineError (never an exception):
    malformed JSON, integers over Python's digit limit (ValueError), deep nesting."""
    try:
        return json.loads(s)
    except json.JSONDecodeError as e:
        return LineError(f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}", excerpt(s))
    except RecursionError:
        return LineError("JSON nested too deeply to parse", excerpt(s))
    except ValueError as e:  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"
        return LineError(f"unreadable JSON value: {e}", excerpt(s))


def _json_record(s: str, where: str = "") -> Any:
    """One JSON record (a line, or an array element at ``where`` in the file) or LineError."""
    m = _ESCAPED_BYTE.search(s)
    if m is not None:
        at = where or f"column {m.start() + 1}"
        return LineError(f"invalid UTF-8: byte 0x{ord(m.group()) - 0xDC00:02x} at {at}", excerpt(s))
    return parse_json_value(s)


def load_json(path: pathlib.Path) -> Any:
    """Parses one JSON document; truncated or malformed JSON names line and column."""
    s = read_text(path)
    try:
        return json.loads(s)
    except json.JSONDecodeError as e:
        raise FileFormatError(
            path, f"line {e.lineno} column {e.colno}", f"malformed JSON: {e.msg}", _snippet(s, e.pos)
        ) from None
    except (RecursionError, ValueError) as e:
        raise FileFormatError(path, "file", f"unreadable JSON: {type(e).__name__}: {e}") from None


def lenient_lines(path: pathlib.Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of every line, read one at a time (memory does not grow with the
    file), decoded as :func:`read_text_lenient` decodes the whole file. Lines end at "\n" only:
    str.splitlines() would also break inside strings at U+2028, U+0085... (and no byte of a
    multi-byte UTF-8 sequence is "\n", so decoding per line equals decoding the whole)."""
    with open(path, "rb") as fh:
        for i, raw in enumerate(fh, start=1):
            if i == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            yield i, raw.decode("utf-8", "surrogateescape").removesuffix("\n")


def iter_json_lines(path: pathlib.Path, *, wanted: Callable[[str], bool] | None = None) -> Iterator[tuple[int, Any]]:
    """``(line number, object | LineError)`` for every non-blank line, streamed; ``wanted``
    (optional) skips, unparsed, the lines it returns False for.

    A broken line (bad JSON, bad UTF-8, deep nesting) is reported on its own.
    """
    for i, line in lenient_lines(path):
        if line.strip() and (wanted is None or wanted(line)):
            yield i, _json_record(line)


def load_json_lines(path: pathlib.Path) -> list[tuple[int, Any]]:
    """:func:`iter_json_lines` as a list."""
    return list(iter_json_lines(path))


# --- JSON arrays, split into elements before parsing -------------------------------------

# In an array, the characters that change nesting or end an element; inside a string, the
# characters that end it or escape.
_STRUCT = re.compile(r'["\[\]{},]')
_IN_STRING = re.compile(r'["\\]')


def _element_end(s: str, i: int) -> tuple[int, int]:
    """``(end, max depth)`` of the element starting at ``i``: the index of the ``,`` or ``]``
    that closes it at nesting depth 0, or ``len(s)`` when the file ends first (cut off).
    Strings are skipped and a mismatched closer closes up to its own opener, so a bad value
    inside an element stays inside that element."""
    open_: list[str] = []
    top = 0
    while True:
        m = _STRUCT.search(s, i)
        if m is None:
            return len(s), top
        c, i = m.group(), m.end()
        if c == '"':
            while True:
                q = _IN_STRING.search(s, i)
                if q is None:
                    return len(s), top
                i = q.end() + (1 if q.group() == "\\" else 0)
                if q.group() == '"':
                    break
        elif c in "[{":
            open_.append(c)
            top = max(top, len(open_))
        elif not open_ and c in ",]":
            return m.start(), top
        elif c in "]}":
            opener = "[" if c == "]" else "{"
            while open_ and open_.pop() != opener:
                pass


def _line_of(s: str, pos: int) -> int:
    return s.count("\n", 0, pos) + 1


def _position(s: str, pos: int) -> str:
    return f"line {_line_of(s, pos)} column {pos - s.rfind(chr(10), 0, pos)}"


def json_array_entries(s: str) -> Iterator[tuple[str, Any]]:
    """``("record i", value | LineError)`` for each element of the JSON array text ``s``."""
    i = s.index("[") + 1
    index = 0
    while True:
        while i < len(s) and s[i] in " \t\r\n":
            i += 1
        if i >= len(s):
            return  # "[" never closed after a complete element: nothing more to read
        if s[i] == "]" and index == 0:
            i += 1
            break
        end, depth = _element_end(s, i)
        piece = s[i:end]
        loc = f"record {index}"
        if end == len(s):
            yield loc, LineError(f"cut off: the file ends inside this element (line {_line_of(s, i)})", excerpt(piece))
            return
        if not piece.strip():
            yield loc, LineError(f"empty array element (line {_line_of(s, i)})", "")
        elif depth > MAX_JSON_DEPTH:
            yield loc, LineError(f"JSON nested {depth} levels deep (at most {MAX_JSON_DEPTH})", excerpt(piece))
        else:
            m = _ESCAPED_BYTE.search(piece)
            yield loc, _json_record(piece, _position(s, i + m.start()) if m else "")
        index += 1
        i = end + 1
        if s[end] == "]":
            break
    rest = s[i:].strip()
    if rest:
        yield f"record {index}", LineError(f"content after the closing ']' (line {_line_of(s, i)})", excerpt(rest))


def _starts_with_bracket(path: pathlib.Path, chunk: int = 1 << 16) -> bool:
    """Whether the first non-whitespace character of the (lenient UTF-8) file is ``[``."""
    with open(path, "rb") as fh:
        head = fh.read(chunk)
        if head.startswith(_BOM):
            head = head[len(_BOM):]
        while head:
            text = head.decode("utf-8", "surrogateescape").lstrip()
            if text:
                return text.startswith("[")
            head = fh.read(chunk)
    return False


def iter_json_array_or_lines(path: pathlib.Path, *,
                             wanted: Callable[[str], bool] | None = None) -> Iterator[tuple[str, Any]]:
    """A JSON array (``[`` first; ``record i``) or JSON lines (``line N``), split per record and
    parsed one record at a time. JSON lines are streamed from the file; an array's text is read
    whole (its end cannot be found otherwise) but its elements are not all kept. ``wanted``
    (JSON lines only) skips the lines it returns False for without parsing them."""
    if _starts_with_bracket(path):
        yield from json_array_entries(read_text_lenient(path))
        return
    for i, x in iter_json_lines(path, wanted=wanted):
        yield f"line {i}", x


def load_json_array_or_lines(path: pathlib.Path) -> list[tuple[str, Any]]:
    """:func:`iter_json_array_or_lines` as a list."""
    return list(iter_json_array_or_lines(path))


# --- CSV, one row at a time --------------------------------------------------------------


class _Lines:
    """An iterator over physical lines that the caller can rewind (to resync after a bad row)."""

    def __init__(self, lines: list[str]):
        self.lines, self.pos = lines, 0

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        if self.pos >= len(self.lines):
            raise StopIteration
        self.pos += 1
        return self.lines[self.pos - 1]


def _row_error(row: list[str], names: list[str] | None, ncols: int | None) -> tuple[str, str] | None:
    """``(field, reason)`` for a row with bad bytes or the wrong column count, else None."""
    for j, cell in enumerate(row):
        reason = bad_bytes(cell)
        if reason:
            name = names[j] if names and j < len(names) else f"column {j + 1}"
            return name, reason.replace(" at column", " at character")
    if ncols is not None and len(row) != ncols:
        return "<line>", f"CSV row has {len(row)} columns, expected {ncols}"
    return None


def read_csv(
    path: pathlib.Path, *, header: bool, ncols: int | None = None
) -> tuple[list[str] | None, list[tuple[int, list[str] | LineError]]]:
    """Reads a CSV row by row: every row must have the header's (or ``ncols``) column count.

    Returns ``(header or None, [(first line of the record, row | LineError), ...])``. A bad
    row (wrong column count, bad quoting, bad bytes) is one LineError. When a bad record
    spans several lines (an unbalanced quote swallows the lines after it), only its first
    line is quarantined and reading resumes on the next line, so the rows it swallowed are
    still read. A bad header raises FileFormatError: the rows cannot be told apart then.
    """
    # StringIO(newline="") splits records on \r/\n only, like open(newline="") (not U+2028).
    feed = _Lines(io.StringIO(read_text_lenient(path), newline="").readlines())
    names: list[str] | None = None
    rows: list[tuple[int, list[str] | LineError]] = []
    reader = csv.reader(feed, strict=True)
    while True:
        start = feed.pos
        try:
            row: list[str] | None = next(reader)
            problem = None
        except StopIteration:
            break
        except csv.Error as e:
            row, problem = None, ("<line>", f"malformed CSV: {e}")
        if row == []:  # blank line
            continue
        if problem is None and row is not None:
            if header and names is None:
                bad = bad_bytes(",".join(row))
                if bad:
                    raise FileFormatError(path, f"line {start + 1}", f"CSV header: {bad}")
                names, ncols = row, len(row)
                continue
            problem = _row_error(row, names, ncols)
        if problem is None:
            rows.append((start + 1, row))
            continue
        if header and names is None:
            raise FileFormatError(path, f"line {start + 1}", f"CSV header: {problem[1]}")
        if feed.pos - start > 1:  # resync: only the first line is the bad record
            problem = (problem[0], problem[1] + f" (record spans lines {start + 1}-{feed.pos}; "
                                                "only its first line is quarantined, reading resumes on the next)")
            feed.pos = start + 1
        rows.append((start + 1, LineError(problem[1], excerpt(feed.lines[start]), problem[0])))
        reader = csv.reader(feed, strict=True)  # a fresh parser: no state left from the bad row
    return names, rows


def parse_xml(path: pathlib.Path) -> ET.Element:
    """Parses an XML file (stdlib; no entity expansion from the network)."""
    s = read_text(path)
    try:
        return ET.fromstring(s)
    except ET.ParseError as e:
        line, col = e.position
        raise FileFormatError(path, f"line {line} column {col + 1}", f"malformed XML: {e}") from None
