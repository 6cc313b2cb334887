"""Normalized JSONL on disk: ``<out>/<dataset>/<language>/<split>.jsonl`` + ``quarantine.jsonl``.

Readers are strict: a malformed normalized file is a bug upstream, so :func:`iter_records`
raises :class:`NormalizedDataError` naming file and line instead of skipping it.
"""

from __future__ import annotations

import json
import pathlib
from typing import IO, Any, Iterable, Iterator

from data_pipelines.importers.base import BadRecord, FieldError, FileFormatError
from data_pipelines.importers.normalized import QUARANTINE_NAME, record_from_json
from data_pipelines.importers.readers import LineError, load_json_lines
from globmed_jax.data.schema import Record

Key = tuple[str, str, str]  # (dataset, language, split)


class NormalizedDataError(ValueError):
    """A normalized JSONL file that cannot be read back (names file and line)."""


def record_path(out_dir: pathlib.Path, dataset: str, language: str, split: str) -> pathlib.Path:
    return pathlib.Path(out_dir) / dataset / language / f"{split}.jsonl"


def _dumps(obj: Any) -> str:
    # default=str: quarantined raw items may hold odd types; they must still be written.
    return json.dumps(obj, ensure_ascii=False, default=str)


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
        fh.write(_dumps(record.to_json()) + "\n")
        self.counts[key] += 1

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class QuarantineWriter:
    """One JSON line per bad record: file, location, field, reason, raw (+ dataset/lang/split)."""

    def __init__(self, path: str | pathlib.Path):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("w", encoding="utf-8")
        self.count = 0

    def write(self, bad: BadRecord) -> None:
        self._fh.write(_dumps(bad.to_json()) + "\n")
        self.count += 1

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "QuarantineWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_records(records: Iterable[Record], out_dir: str | pathlib.Path) -> dict[Key, pathlib.Path]:
    """Writes records (no validation) and returns the file written per key."""
    with RecordWriter(out_dir) as w:
        for r in records:
            w.write(r)
    return dict(w.paths)


def normalized_files(path: str | pathlib.Path) -> list[pathlib.Path]:
    """The normalized JSONL files of a build output (a file, or a directory searched recursively)."""
    path = pathlib.Path(path)
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.jsonl") if p.name != QUARANTINE_NAME)


def iter_records(path: str | pathlib.Path) -> Iterator[Record]:
    """Yields the Records of a normalized JSONL file or of every such file below a directory."""
    for file in normalized_files(path):
        try:
            lines = load_json_lines(file)
        except FileFormatError as e:
            raise NormalizedDataError(str(e)) from None
        for lineno, obj in lines:
            if isinstance(obj, LineError):
                raise NormalizedDataError(f"{file}:line {lineno}: {obj.reason}")
            try:
                yield record_from_json(obj)
            except FieldError as e:
                raise NormalizedDataError(f"{file}:line {lineno}: field {e.field!r}: {e.reason}") from None


def load_records(path: str | pathlib.Path) -> list[Record]:
    """All Records of a normalized JSONL file or directory (see :func:`iter_records`)."""
    return list(iter_records(path))


def iter_quarantine(path: str | pathlib.Path) -> Iterator[dict[str, Any]]:
    """The entries of every ``quarantine.jsonl`` at or below ``path``."""
    path = pathlib.Path(path)
    files = [path] if path.is_file() else sorted(path.rglob(QUARANTINE_NAME))
    for file in files:
        for lineno, obj in load_json_lines(file):
            if isinstance(obj, LineError):
                raise NormalizedDataError(f"{file}:line {lineno}: {obj.reason}")
            yield obj
