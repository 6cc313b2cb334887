"""Importer for already-normalized JSONL (``Record.to_json()`` lines), e.g. to re-validate
or merge a build output. ``quarantine.jsonl`` files are skipped."""

from __future__ import annotations

import pathlib
from typing import Any, Iterator

from data_pipelines.importers.base import BadRecord, FieldError, ImportOptions, Item, guarded_file, guarded_item, list_files
from data_pipelines.importers.readers import LineError, load_json_lines
from globmed_jax.data.records_io import QUARANTINE_NAME
from globmed_jax.data.schema import Record


def record_from_json(obj: Any) -> Record:
    """``Record.from_json`` with field-named errors for missing/unknown keys."""
    if not isinstance(obj, dict):
        raise FieldError("<record>", f"expected an object, got {type(obj).__name__}")
    try:
        return Record.from_json(obj)
    except TypeError as e:  # missing required field(s)
        raise FieldError("<record>", str(e)) from None
    except ValueError as e:  # unknown field(s)
        raise FieldError("<record>", str(e)) from None


def import_normalized(path: pathlib.Path, opts: ImportOptions) -> Iterator[Item]:
    for file in list_files(path, (".jsonl",)):
        if file.name == QUARANTINE_NAME:
            continue
        yield from guarded_file(file, load_json_lines, lambda lines: _convert(file, lines))


def _convert(file: pathlib.Path, lines: list[tuple[int, Any]]) -> Iterator[Item]:
    for lineno, obj in lines:
        loc = f"line {lineno}"
        if isinstance(obj, LineError):
            yield BadRecord(str(file), loc, "<line>", obj.reason, obj.raw)
            continue
        ctx = {k: obj.get(k) for k in ("dataset", "language", "split")} if isinstance(obj, dict) else {}
        yield guarded_item(lambda: record_from_json(obj), file=file, location=loc, raw=obj, **ctx)
