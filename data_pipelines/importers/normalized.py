"""Importer for already-normalized JSONL (``Record.to_json()`` lines), e.g. to re-validate
or merge a build output. ``quarantine.jsonl`` files are skipped."""

from __future__ import annotations

import pathlib
import re
from typing import Any, Iterator

from data_pipelines.importers.base import FieldError, ImportOptions, Item, guarded_file, list_files
from data_pipelines.importers.convert import convert_entries, line_entries
from globmed_jax.data.records_io import QUARANTINE_NAME, record_from_obj
from globmed_jax.data.schema import Record


_NAMED = re.compile(r"field '([^']+)': (.*)", re.S)


def record_from_json(obj: Any) -> Record:
    """``records_io.record_from_obj`` (schema fields and their types) with FieldErrors that
    name the field when the error does."""
    if not isinstance(obj, dict):
        raise FieldError("<record>", f"expected an object, got {type(obj).__name__}")
    try:
        return record_from_obj(obj)
    except (TypeError, ValueError) as e:  # missing / unknown / mistyped field(s)
        m = _NAMED.fullmatch(str(e))
        raise FieldError(*(m.groups() if m else ("<record>", str(e)))) from None


def import_normalized(path: pathlib.Path, opts: ImportOptions) -> Iterator[Item]:
    for file in list_files(path, (".jsonl",)):
        if file.name == QUARANTINE_NAME:
            continue
        yield from guarded_file(file, line_entries, lambda entries: convert_entries(file, entries, _build, _context))


def _build(obj: Any, index: int) -> Record:
    return record_from_json(obj)


def _context(obj: Any, index: int) -> dict[str, Any]:
    """The record's own dataset/language/split, for the counts of a quarantined line."""
    return {k: obj.get(k) for k in ("dataset", "language", "split")} if isinstance(obj, dict) else {}
