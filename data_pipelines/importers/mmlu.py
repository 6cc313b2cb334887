"""MMLU-style headerless CSV importer (``question,A,B,C,D,answer``), e.g. the African MMLU.

File names are ``{subject}_{dev|val|test}_{lang}.csv`` (the original English MMLU has no
language suffix, so it defaults to ``en``). ``dev`` holds MMLU's few-shot exemplars and is
mapped to ``train``; ``val`` -> ``validation``. ``source_id`` is
``mmlu:<subject>:<source split>:<row>``, so the translations of one item stay aligned.
"""

from __future__ import annotations

import pathlib
from typing import Iterator

from data_pipelines.importers.base import (
    ImportOptions,
    Item,
    guarded_file,
    guarded_item,
    list_files,
    make_record,
    no_split_error,
    normalize_split,
    resolve_language,
    text,
)
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


def import_mmlu(path: pathlib.Path, opts: ImportOptions) -> Iterator[Item]:
    for file in list_files(path, (".csv",)):
        subject, src_split, file_lang = parse_mmlu_name(file.name)
        lang = resolve_language(opts.language or file_lang or "en")
        split = normalize_split(opts.split) if opts.split else _SPLIT_TOKENS.get(src_split or "", None)
        ctx = dict(dataset=DATASET, language=lang, split=split)
        if split is None:
            yield no_split_error(file, **ctx)
            continue
        yield from guarded_file(
            file,
            lambda f: read_csv(f, header=False, ncols=6),
            lambda parsed: _convert(file, parsed[1], subject, src_split or split, lang, split),
            **ctx,
        )


def _convert(
    file: pathlib.Path, rows: list[tuple[int, list[str]]], subject: str, src_split: str, lang: str, split: str
) -> Iterator[Item]:
    for i, (lineno, row) in enumerate(rows):
        def build():
            options = {letter: text(v, letter, required=False) for letter, v in zip("ABCD", row[1:5])}
            return make_record(
                dataset=DATASET, task="mcqa", language=lang, split=split, local_id=f"{subject}:{src_split}:{i}",
                question=text(row[0], "question"),
                answer=answer_letter(row[5], options, fmt="letter", field="answer"),
                options=options, meta={"subject": subject, "source_split": src_split},
            )

        yield guarded_item(build, file=file, location=f"line {lineno}", raw=row, dataset=DATASET, language=lang, split=split)
