"""The per-item loop every importer shares, so a format importer is only its field mapping.

A reader turns a file into *entries* ``(location, value)``; :func:`convert_entries` runs the
importer's ``build(value, index) -> Record`` on each one. A line that did not parse
(:class:`LineError`) and any FieldError raised by ``build`` become a BadRecord naming file,
location and field, so every entry read is either kept or quarantined, never lost. Before
``build`` runs, :func:`checked_value` rejects what no importer should coerce: non-finite
numbers, lone surrogates and deep nesting, each naming the field that holds it.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable, Iterable, Iterator, Mapping, Union

from data_pipelines.importers.base import BadRecord, ImportOptions, Item, checked_value, guarded_item, import_split_files
from data_pipelines.importers.readers import (
    LineError, iter_json_array_or_lines, load_json_array_or_lines, load_json_lines, read_csv,
)
from globmed_jax.data.schema import Record

Entry = tuple[str, Any]  # (location such as "line 3" or "record 5", parsed item or LineError)
Build = Callable[[Any, int], Record]  # (item, its position in the file) -> Record; raises FieldError
# BadRecord dataset/language/split: fixed per file, or per item when the item decides them.
Context = Union[Mapping[str, Any], Callable[[Any, int], Mapping[str, Any]]]


def convert_entries(
    file: pathlib.Path,
    entries: Iterable[Entry],
    build: Build,
    context: Context | None = None,
    *,
    shown: Callable[[Any], Any] | None = None,
) -> Iterator[Item]:
    """Yields ``build``'s Record or a BadRecord for each entry, in file order.

    ``index`` counts every entry (unparsable lines included), so positional ids stay stable
    when one line of a file breaks. ``shown`` turns an item into what a BadRecord keeps as
    ``raw`` (e.g. XML serialised back to text); by default the item itself.
    """
    for index, (location, value) in enumerate(entries):
        ctx = dict(context(value, index) if callable(context) else context or {})
        if isinstance(value, LineError):
            yield BadRecord(str(file), location, value.field, value.reason, value.raw, **ctx)
            continue
        raw = shown(value) if shown else value
        yield guarded_item(lambda: build(checked_value(value), index), file=file, location=location, raw=raw, **ctx)


# --- readers that return entries ---------------------------------------------------------


def line_entries(file: pathlib.Path) -> list[Entry]:
    """JSON lines as ``("line N", object | LineError)``."""
    return [(f"line {n}", obj) for n, obj in load_json_lines(file)]


def csv_entries(file: pathlib.Path) -> list[Entry]:
    """A CSV with a header as ``("line N", {column: value})``; N is where the record starts."""
    header, rows = read_csv(file, header=True)
    return [(f"line {n}", row if isinstance(row, LineError) else dict(zip(header or [], row))) for n, row in rows]


def json_entries(file: pathlib.Path) -> list[Entry]:
    """A JSON array (``record i``) or JSON lines (``line N``)."""
    return load_json_array_or_lines(file)


@dataclasses.dataclass(frozen=True)
class StreamedJsonEntries:
    """The entries of :func:`json_entries`, read again from the file on every pass instead of
    held in memory (a release's largest files); ``wanted`` as in ``iter_json_array_or_lines``."""

    file: pathlib.Path
    wanted: Callable[[str], bool] | None = None

    def __iter__(self) -> Iterator[Entry]:
        return iter_json_array_or_lines(self.file, wanted=self.wanted)


# --- the whole importer for formats with one split per file ------------------------------


def import_entries(
    path: pathlib.Path,
    suffixes: Iterable[str],
    opts: ImportOptions,
    *,
    dataset: str,
    language: str,
    read: Callable[[pathlib.Path], Iterable[Entry]],
    build: Callable[[Any, int, str], Record],
    default_split: str | None = None,
) -> Iterator[Item]:
    """Files below ``path`` -> entries -> ``build(item, index, split)``, for formats whose
    dataset and language are fixed per run and whose split comes from ``--split`` or the
    file name (see :func:`import_split_files`)."""

    def convert(file: pathlib.Path, entries: Iterable[Entry], split: str) -> Iterator[Item]:
        ctx = dict(dataset=dataset, language=language, split=split)
        return convert_entries(file, entries, lambda value, index: build(value, index, split), ctx)

    return import_split_files(path, suffixes, opts, dataset=dataset, language=language, parse=read,
                              convert=convert, default_split=default_split)
