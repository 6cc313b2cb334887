"""Normalized Record JSONL on disk: the one reader, the one writer and the one record-id convention.

Layout: ``<out>/<dataset>/<language>/<split>.jsonl``, one ``Record.to_json()`` object per line
(``quarantine.jsonl`` files beside them hold rejected items and are never read as records).
Every producer (importers, translation, GlobMed-mini) writes through :class:`RecordWriter` and
every consumer (training tasks, the bench, validation, stats, the TFDS builder) reads through
:func:`iter_records`, so a change of the line format has one place.

Readers are strict: a malformed normalized file is a bug upstream, so :func:`iter_records`
raises :class:`NormalizedDataError` naming file and line instead of skipping it.

Writers are safe against hostile records: dataset, language and split become path parts only
when they match :data:`NAME_PATTERN` (:func:`check_name`), nothing is written outside the
output directory (symlinks included), and every file is written under a temporary name in its
own directory and renamed into place (:func:`atomic_open`), so an interrupted write leaves the
previous file or none, never half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
from typing import IO, Any, Iterable, Iterator

from globmed_jax.data.schema import Record

__all__ = [
    "QUARANTINE_NAME", "NAME_PATTERN", "NormalizedDataError", "Key", "check_name", "record_id", "record_path",
    "normalized_files", "iter_records", "load_records", "read_split", "record_from_obj", "RecordWriter",
    "write_records", "dumps", "atomic_open", "inside_dir", "record_line",
]

QUARANTINE_NAME = "quarantine.jsonl"

Key = tuple[str, str, str]  # (dataset, language, split)


class NormalizedDataError(ValueError):
    """A normalized JSONL file that cannot be read back (names file and line)."""


def record_id(source_id: str, language: str) -> str:
    """The id of a source item in one language: ``<source_id>@<language>``.

    ``source_id`` is shared by an item's translations, so the id is unique per item per
    language. (GlobMed-mini's older ``<dataset>/<language>/...`` ids are still read as they are.)
    """
    return f"{source_id}@{language}"


# What a dataset, language or split name may be: it becomes a path part, so no separators,
# no leading dot, no "..", bounded length, lower case (one spelling per name on any filesystem).
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


def check_name(kind: str, value: Any) -> str:
    """``value`` when it is a safe path part (see NAME_PATTERN), else ValueError naming ``kind``."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value) or ".." in value:
        raise ValueError(f"{kind} {value!r} is not a valid name (lower-case letters, digits, '_', '.', '-'; "
                         f"at most 64; no '..')")
    return value


def record_path(out_dir: str | pathlib.Path, dataset: str, language: str, split: str) -> pathlib.Path:
    """``<out_dir>/<dataset>/<language>/<split>.jsonl``; ValueError for a name that is not a
    safe path part."""
    parts = (check_name("dataset", dataset), check_name("language", language), check_name("split", split))
    return pathlib.Path(out_dir) / parts[0] / parts[1] / f"{parts[2]}.jsonl"


def inside_dir(path: pathlib.Path, root: pathlib.Path) -> pathlib.Path:
    """``path`` when it resolves (symlinks followed) inside ``root``, else ValueError."""
    real = path.resolve()
    if not real.is_relative_to(root.resolve()):
        raise ValueError(f"refusing to write {path}: it resolves to {real}, outside {root}")
    return path


@contextlib.contextmanager
def atomic_open(path: str | pathlib.Path) -> Iterator[IO[str]]:
    """A text file written under a temporary name beside ``path`` and renamed onto it when the
    block ends without an exception (the temporary file is removed otherwise)."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fh = tmp.open("w", encoding="utf-8")
    try:
        yield fh
        fh.close()
        os.replace(tmp, path)
    finally:
        fh.close()
        tmp.unlink(missing_ok=True)


def dumps(obj: Any) -> str:
    """One JSONL line (no newline). ``default=str``: quarantined raw items may hold odd types and
    must still be written."""
    return json.dumps(obj, ensure_ascii=False, default=str)


def record_line(record: Record) -> str:
    """A record's line, strictly: NaN/Infinity or text that is not valid Unicode raise
    ValueError (validation quarantines such records before they get here)."""
    line = json.dumps(record.to_json(), ensure_ascii=False, allow_nan=False)
    line.encode("utf-8")  # UnicodeEncodeError (a ValueError) on a lone surrogate
    return line


# ------------------------------------------------------------------------------------ read


def normalized_files(path: str | pathlib.Path) -> list[pathlib.Path]:
    """The normalized JSONL files of a build output (a file, or a directory searched recursively)."""
    path = pathlib.Path(path)
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.jsonl") if p.name != QUARANTINE_NAME)


def _lines(file: pathlib.Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of every line, read one line at a time (memory does not grow with
    the file). Lines are split on ``\\n`` only: str.splitlines() would also break inside
    strings at U+2028, U+0085... A BOM on the first line is tolerated."""
    offset = 0
    with file.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise NormalizedDataError(f"{file}:{lineno}: invalid UTF-8 at byte {offset + e.start}: {e.reason}") from None
            offset += len(raw)
            yield lineno, text


def _iter_file(file: pathlib.Path) -> Iterator[Record]:
    for lineno, line in _lines(file):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise NormalizedDataError(f"{file}:{lineno}: malformed JSON at column {e.colno}: {e.msg}") from None
        if not isinstance(obj, dict):
            raise NormalizedDataError(f"{file}:{lineno}: bad record: expected an object, got {type(obj).__name__}")
        try:
            yield record_from_obj(obj)
        except (TypeError, ValueError) as e:  # missing / unknown / mistyped fields
            raise NormalizedDataError(f"{file}:{lineno}: bad record: {e}") from None


_TEXT_FIELDS = ("id", "source_id", "dataset", "language", "split", "family", "question", "answer")


def record_from_obj(obj: Any) -> Record:
    """``Record.from_json`` plus the field types of the schema, so a hand-edited or hostile
    line cannot carry e.g. a list as ``options`` into consumers; ValueError/TypeError name
    the field."""
    if not isinstance(obj, dict):
        raise TypeError(f"expected an object, got {type(obj).__name__}")
    r = Record.from_json(obj)
    for f in _TEXT_FIELDS:
        if not isinstance(getattr(r, f), str):
            raise TypeError(f"field {f!r}: expected a string, got {type(getattr(r, f)).__name__}")
    for f in ("context", "explanation"):
        if getattr(r, f) is not None and not isinstance(getattr(r, f), str):
            raise TypeError(f"field {f!r}: expected a string or null, got {type(getattr(r, f)).__name__}")
    if not isinstance(r.options, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in r.options.items()):
        raise TypeError("field 'options': expected an object of strings")
    if not isinstance(r.meta, dict):
        raise TypeError(f"field 'meta': expected an object, got {type(r.meta).__name__}")
    return r


def iter_records(path: str | pathlib.Path) -> Iterator[Record]:
    """Yields the Records of a normalized JSONL file or of every such file below a directory."""
    for file in normalized_files(path):
        yield from _iter_file(file)


def load_records(path: str | pathlib.Path) -> list[Record]:
    """All Records of a normalized JSONL file or directory (see :func:`iter_records`)."""
    return list(iter_records(path))


def read_split(directory: str | pathlib.Path, split: str) -> list[Record]:
    """The Records of one split: ``<directory>/<split>.jsonl`` when it exists, else every
    ``<split>.jsonl`` below ``directory`` (the ``<dataset>/<language>/`` layout), in path order."""
    root = pathlib.Path(directory)
    direct = root / f"{split}.jsonl"
    files = [direct] if direct.is_file() else sorted(root.rglob(f"{split}.jsonl"))
    return [r for f in files for r in _iter_file(f)]


# ----------------------------------------------------------------------------------- write


class RecordWriter:
    """Streams records into one JSONL file per (dataset, language, split), opened lazily.

    Files are written under temporary names and renamed into place by :meth:`close`; leaving
    the ``with`` block on an exception (or calling :meth:`abort`) removes them instead, so a
    failed run leaves the previous outputs as they were. ValueError for a record whose names
    are not safe path parts or whose path resolves outside ``out_dir``.
    """

    def __init__(self, out_dir: str | pathlib.Path):
        self.out_dir = pathlib.Path(out_dir)
        self._files: dict[Key, IO[str]] = {}
        self._tmp: dict[Key, pathlib.Path] = {}
        self.paths: dict[Key, pathlib.Path] = {}
        self.counts: dict[Key, int] = {}

    def _open(self, key: Key) -> IO[str]:
        path = inside_dir(record_path(self.out_dir, *key), self.out_dir)  # before mkdir: no dirs outside
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp[key] = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self.paths[key] = path
        self.counts[key] = 0
        fh = self._files[key] = tmp.open("w", encoding="utf-8")
        return fh

    def write(self, record: Record) -> None:
        key = (record.dataset, record.language, record.split)
        line = record_line(record)
        fh = self._files.get(key) or self._open(key)
        fh.write(line + "\n")
        self.counts[key] += 1

    def close(self) -> None:
        """Renames every written file into place."""
        for key, fh in self._files.items():
            fh.close()
            os.replace(self._tmp[key], self.paths[key])
        self._files.clear()

    def abort(self) -> None:
        """Removes the temporary files; the previous outputs stay as they were."""
        for key, fh in self._files.items():
            fh.close()
            self._tmp[key].unlink(missing_ok=True)
        self._files.clear()

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.abort() if exc_type is not None else self.close()


def write_records(records: Iterable[Record], out_dir: str | pathlib.Path) -> dict[Key, pathlib.Path]:
    """Writes records (no validation) and returns the file written per key."""
    with RecordWriter(out_dir) as w:
        for r in records:
            w.write(r)
    return dict(w.paths)
