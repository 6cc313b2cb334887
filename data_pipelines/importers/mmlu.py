"""MMLU-style headerless CSV importer (``question,A,B,C,D,answer``), e.g. the African MMLU.

File names are ``{subject}_{dev|val|test}_{lang}.csv`` (the original English MMLU has no
language suffix, so it defaults to ``en``). ``dev`` holds MMLU's few-shot exemplars and is
mapped to ``train``; ``val`` -> ``validation``. ``source_id`` is
``mmlu:<subject>:<source split>:<row>``, so the translations of one item stay aligned.
"""

from __future__ import annotations

import functools
import pathlib
from typing import Any, Iterator

from data_pipelines.importers.base import (
    ImportOptions, Item, guarded_file, list_files, make_record, no_split_error, normalize_split, resolve_language, text,
)
from data_pipelines.importers.convert import Entry, convert_entries
from data_pipelines.importers.mcqa import answer_letter
from data_pipelines.importers.readers import read_csv

DATASET = "mmlu"
_SPLIT_TOKENS = {"dev": "train", "val": "validation", "test": "test", "train": "train"}


def parse_mmlu_name(name: str) -> tuple[str, str | None, str | None]:
    """``clinical_knowledge_dev_zu.csv`` -> (``clinical_knowledge``, ``dev``, ``zu``)."""
    tokens = pathlib.Path(name).stem.split("_")
    pos = [i for i, t in enumerate(tokens) if t in _SPLIT_TOKENS]
    if not pos:
        return "_".join(tokens), None, None
    i = pos[-1]
    lang = "_".join(tokens[i + 1 :]) or None
    return "_".join(tokens[:i]), tokens[i], lang


def _rows(file: pathlib.Path) -> list[Entry]:
    """Rows as entries; a bad row is already a LineError naming ``column N`` for bad bytes."""
    return [(f"line {n}", row) for n, row in read_csv(file, header=False, ncols=6)[1]]


def import_mmlu(path: pathlib.Path, opts: ImportOptions) -> Iterator[Item]:
    for file in list_files(path, (".csv",)):
        subject, src_split, file_lang = parse_mmlu_name(file.name)
        lang = resolve_language(opts.language or file_lang or "en")
        split = normalize_split(opts.split) if opts.split else _SPLIT_TOKENS.get(src_split or "", None)
        ctx = dict(dataset=DATASET, language=lang, split=split)
        if split is None:
            yield no_split_error(file, **ctx)
            continue
        build = functools.partial(_record, subject=subject, src_split=src_split or split, lang=lang, split=split)
        yield from guarded_file(file, _rows, lambda entries: convert_entries(file, entries, build, ctx), **ctx)


def _record(row: list[str], i: int, subject: str, src_split: str, lang: str, split: str) -> Any:
    options = {letter: text(v, letter, required=False) for letter, v in zip("ABCD", row[1:5])}
    return make_record(
        dataset=DATASET, family="mcqa", language=lang, split=split, local_id=f"{subject}:{src_split}:{i}",
        question=text(row[0], "question"),
        answer=answer_letter(row[5], options, fmt="letter", field="answer"),
        options=options, meta={"subject": subject, "source_split": src_split},
    )
