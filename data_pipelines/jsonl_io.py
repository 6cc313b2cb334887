"""The build's quarantine on disk: ``quarantine.jsonl`` beside the normalized Record files.

Records themselves are read and written by :mod:`globmed_jax.data.records_io` (the one reader
and writer of the ``<out>/<dataset>/<language>/<split>.jsonl`` layout); this module adds the
quarantine lines, one ``BadRecord`` each, which only the data pipelines produce.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
from typing import Any, Iterator

from data_pipelines.importers.base import BadRecord
from data_pipelines.importers.readers import RAW_EXCERPT, LineError, iter_json_lines
from globmed_jax.data.records_io import QUARANTINE_NAME, NormalizedDataError, atomic_open


def quarantine_line(bad: BadRecord) -> str:
    """A BadRecord as one strict JSON line. What made the record bad (NaN, a lone surrogate,
    10k levels of nesting, an XML element) must not make its quarantine line unwritable:
    such a ``raw`` is kept as a bounded ``ascii()`` excerpt instead."""
    obj = bad.to_json()
    try:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False, default=str).encode("utf-8").decode("utf-8")
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        obj["raw"] = ascii(bad.raw)[:RAW_EXCERPT]
        return json.dumps(obj, ensure_ascii=True, default=str)


class QuarantineWriter:
    """One JSON line per bad record: file, location, field, reason, raw (+ dataset/lang/split,
    file_level). Written under a temporary name and renamed into place on a clean exit."""

    def __init__(self, path: str | pathlib.Path):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stack = contextlib.ExitStack()
        self._fh = self._stack.enter_context(atomic_open(self.path))
        self.count = 0

    def write(self, bad: BadRecord) -> None:
        self._fh.write(quarantine_line(bad) + "\n")
        self.count += 1

    def close(self) -> None:
        self._stack.close()

    def abort(self) -> None:
        """Drops the temporary file; an earlier quarantine.jsonl stays as it was."""
        self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> "QuarantineWriter":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.abort() if exc_type is not None else self.close()


def iter_quarantine(path: str | pathlib.Path) -> Iterator[dict[str, Any]]:
    """The entries of every ``quarantine.jsonl`` at or below ``path``."""
    path = pathlib.Path(path)
    files = [path] if path.is_file() else sorted(path.rglob(QUARANTINE_NAME))
    for file in files:
        for lineno, obj in iter_json_lines(file):  # streamed: a quarantine can be large
            if isinstance(obj, LineError):
                raise NormalizedDataError(f"{file}:line {lineno}: {obj.reason}")
            yield obj
