"""The build's quarantine on disk: ``quarantine.jsonl`` beside the normalized Record files.

Records themselves are read and written by :mod:`globmed_jax.data.records_io` (the one reader
and writer of the ``<out>/<dataset>/<language>/<split>.jsonl`` layout); this module adds the
quarantine lines, one ``BadRecord`` each, which only the data pipelines produce.
"""

from __future__ import annotations

import pathlib
from typing import Any, Iterator

from data_pipelines.importers.base import BadRecord
from data_pipelines.importers.readers import LineError, load_json_lines
from globmed_jax.data.records_io import QUARANTINE_NAME, NormalizedDataError, dumps


class QuarantineWriter:
    """One JSON line per bad record: file, location, field, reason, raw (+ dataset/lang/split)."""

    def __init__(self, path: str | pathlib.Path):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("w", encoding="utf-8")
        self.count = 0

    def write(self, bad: BadRecord) -> None:
        self._fh.write(dumps(bad.to_json()) + "\n")
        self.count += 1

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "QuarantineWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_quarantine(path: str | pathlib.Path) -> Iterator[dict[str, Any]]:
    """The entries of every ``quarantine.jsonl`` at or below ``path``."""
    path = pathlib.Path(path)
    files = [path] if path.is_file() else sorted(path.rglob(QUARANTINE_NAME))
    for file in files:
        for lineno, obj in load_json_lines(file):
            if isinstance(obj, LineError):
                raise NormalizedDataError(f"{file}:line {lineno}: {obj.reason}")
            yield obj
