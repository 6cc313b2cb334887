"""XMedBench importer (FreedomIntelligence/Apollo ``metadata/{test,dev}/{lang}.json``).

Each file is a JSON list of ``{question, options, answer, source[, context]}`` where
``options`` is ONE string ``"(A) ...\\n(B) ..."`` and ``answer`` is ``"(B)"``. Language is the
file stem, split the parent folder (``dev`` -> ``validation``). Items of different language
files are different questions, so ``source_id`` includes the language. The original
``source`` (``headqa``, ``mmlu-medical-ar``, ``pubmedqa`` ...) is kept in ``meta``;
option text is kept verbatim (Apollo's trailing ``.``/``..`` included).
"""

from __future__ import annotations

import functools
import pathlib
from typing import Any, Iterator

from data_pipelines.importers.base import (
    ImportOptions, Item, get_field, guarded_file, list_files, make_record, normalize_split, resolve_language, text,
)
from data_pipelines.importers.convert import convert_entries, json_entries
from data_pipelines.importers.mcqa import answer_letter, options_from_string

DATASET = "xmedbench"


def import_xmedbench(path: pathlib.Path, opts: ImportOptions) -> Iterator[Item]:
    for file in list_files(path, (".json", ".jsonl")):
        lang = resolve_language(opts.language or file.stem)
        split = normalize_split(opts.split or file.parent.name)
        ctx = dict(dataset=DATASET, language=lang, split=split)
        build = functools.partial(_record, lang=lang, split=split)
        yield from guarded_file(file, json_entries, lambda entries: convert_entries(file, entries, build, ctx), **ctx)


def _record(obj: Any, idx: int, lang: str, split: str) -> Any:
    options = options_from_string(text(get_field(obj, "options"), "options"))
    return make_record(
        dataset=DATASET, family="mcqa", language=lang, split=split, local_id=f"{lang}:{split}:{idx}",
        question=text(get_field(obj, "question"), "question"),
        answer=answer_letter(get_field(obj, "answer"), options, fmt="letter"),
        options=options, context=text(obj.get("context"), "context", required=False),
        meta={"source": obj.get("source")} if obj.get("source") else {},
    )
