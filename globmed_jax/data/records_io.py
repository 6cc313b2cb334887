"""Normalized Record JSONL on disk: the one reader, the one writer and the one record-id convention.

Layout: ``<out>/<dataset>/<language>/<split>.jsonl``, one ``Record.to_json()`` object per line
(``quarantine.jsonl`` files beside them hold rejected items and are never read as records).
Every producer (importers, translation, GlobMed-mini) writes through :class:`RecordWriter` and
every consumer (training tasks, the bench, validation, stats, the TFDS builder) reads through
:func:`iter_records`, so a change of the line format has one place.

Readers are strict: a malformed normalized file is a bug upstream, so :func:`iter_records`
raises :class:`NormalizedDataError` naming file and line instead of skipping it.
"""

from __future__ import annotations

import json
import pathlib
from typing import IO, Any, Iterable, Iterator

from globmed_jax.data.schema import Record

__all__ = [
    "QUARANTINE_NAME", "NormalizedDataError", "Key", "record_id", "record_path", "normalized_files",
    "iter_records", "load_records", "read_split", "RecordWriter", "write_records", "dumps",
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


def record_path(out_dir: str | pathlib.Path, dataset: str, language: str, split: str) -> pathlib.Path:
    """``<out_dir>/<dataset>/<language>/<split>.jsonl``."""
    return pathlib.Path(out_dir) / dataset / language / f"{split}.jsonl"


def dumps(obj: Any) -> str:
    """One JSONL line (no newline). ``default=str``: quarantined raw items may hold odd types and
    must still be written."""
    return json.dumps(obj, ensure_ascii=False, default=str)


# ------------------------------------------------------------------------------------ read


def normalized_files(path: str | pathlib.Path) -> list[pathlib.Path]:
    """The normalized JSONL files of a build output (a file, or a directory searched recursively)."""
    path = pathlib.Path(path)
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.jsonl") if p.name != QUARANTINE_NAME)


def _read_text(file: pathlib.Path) -> str:
    data = file.read_bytes()
    try:
        return data.decode("utf-8-sig")  # a BOM is tolerated
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise NormalizedDataError(f"{file}:{line}: invalid UTF-8 at byte {e.start}: {e.reason}") from None


def _iter_file(file: pathlib.Path) -> Iterator[Record]:
    # split on "\n" only: str.splitlines() would also break inside strings at U+2028, U+0085...
    for lineno, line in enumerate(_read_text(file).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise NormalizedDataError(f"{file}:{lineno}: malformed JSON at column {e.colno}: {e.msg}") from None
        if not isinstance(obj, dict):
            raise NormalizedDataError(f"{file}:{lineno}: bad record: expected an object, got {type(obj).__name__}")
        try:
            yield Record.from_json(obj)
        except (TypeError, ValueError) as e:  # missing / unknown fields
            raise NormalizedDataError(f"{file}:{lineno}: bad record: {e}") from None


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
    """Streams records into one JSONL file per (dataset, language, split), opened lazily."""

    def __init__(self, out_dir: str | pathlib.Path):
        self.out_dir = pathlib.Path(out_dir)
        self._files: dict[Key, IO[str]] = {}
        self.paths: dict[Key, pathlib.Path] = {}
        self.counts: dict[Key, int] = {}

    def write(self, record: Record) -> None:
        key = (record.dataset, record.language, record.split)
        fh = self._files.get(key)
        if fh is None:
            path = record_path(self.out_dir, *key)
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = self._files[key] = path.open("w", encoding="utf-8")
            self.paths[key] = path
            self.counts[key] = 0
        fh.write(dumps(record.to_json()) + "\n")
        self.counts[key] += 1

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_records(records: Iterable[Record], out_dir: str | pathlib.Path) -> dict[Key, pathlib.Path]:
    """Writes records (no validation) and returns the file written per key."""
    with RecordWriter(out_dir) as w:
        for r in records:
            w.write(r)
    return dict(w.paths)
