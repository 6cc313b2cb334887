"""Importer registry: format name -> importer ``(path, ImportOptions) -> Iterator[Item]``.

An item is ``(Record, location)`` or a :class:`BadRecord`; importers never raise for bad
records or malformed files. Use :func:`import_path` to run one by name.
"""

from __future__ import annotations

import pathlib
from typing import Callable, Iterator, Optional

from data_pipelines.importers.base import BadRecord, FieldError, FileFormatError, ImportOptions, Item, Location
from data_pipelines.importers.bionli import import_bionli
from data_pipelines.importers.expertqa import import_expertqa
from data_pipelines.importers.frenchmedmcqa import import_frenchmedmcqa
from data_pipelines.importers.globmed import UnknownLanguages, import_globmed, import_sources
from data_pipelines.importers.headqa import import_headqa
from data_pipelines.importers.liveqa import import_liveqa
from data_pipelines.importers.medexpqa import import_medexpqa
from data_pipelines.importers.medmcqa import import_medmcqa
from data_pipelines.importers.medqa import import_medqa
from data_pipelines.importers.mmlu import import_mmlu
from data_pipelines.importers.mmlu_pro import import_mmlu_pro
from data_pipelines.importers.normalized import import_normalized
from data_pipelines.importers.pubmedqa import import_pubmedqa
from data_pipelines.importers.xmedbench import import_xmedbench

Importer = Callable[[pathlib.Path, ImportOptions], Iterator[Item]]

IMPORTERS: dict[str, Importer] = {
    "globmed": import_globmed,
    "medqa": import_medqa,
    "medmcqa": import_medmcqa,
    "headqa": import_headqa,
    "mmlu": import_mmlu,
    "mmlu_pro": import_mmlu_pro,
    "pubmedqa": import_pubmedqa,
    "bionli": import_bionli,
    "liveqa": import_liveqa,
    "expertqa": import_expertqa,
    "medexpqa": import_medexpqa,
    "xmedbench": import_xmedbench,
    "frenchmedmcqa": import_frenchmedmcqa,
    "normalized": import_normalized,
}
FORMATS: tuple[str, ...] = tuple(IMPORTERS)


def get_importer(name: str) -> Importer:
    """The importer for a format name; KeyError lists the known formats."""
    try:
        return IMPORTERS[name]
    except KeyError:
        raise KeyError(f"unknown format {name!r}; known: {', '.join(FORMATS)}") from None


def import_path(fmt: str, path: str | pathlib.Path, options: ImportOptions | None = None) -> Iterator[Item]:
    """Runs the ``fmt`` importer on a file or directory."""
    return get_importer(fmt)(pathlib.Path(path), options or ImportOptions())


Unit = tuple[Optional[str], pathlib.Path]  # (GlobMed source, data file), or (None, the input of another format)


def import_unit(fmt: str, unit: Unit, options: ImportOptions, unknown: UnknownLanguages | None = None) -> Iterator[Item]:
    """The items of one unit of a build's input (``data_pipelines.build``: its stream is its
    units' items in order; the Beam build imports the units independently)."""
    source, path = unit
    if fmt == "globmed":
        return import_sources([(source or "", path)], options, unknown)
    return import_path(fmt, path, options)


__all__ = [
    "BadRecord", "FieldError", "FileFormatError", "FORMATS", "IMPORTERS", "ImportOptions", "Importer", "Item", "Location",
    "get_importer", "import_path", "import_unit", "Unit",
]
