"""ExpertQA importer (jsonl: ``lfqa/*.jsonl``, ``r1_data_anon.jsonl``, ``r2_compiled_anon.jsonl``).

Each line: ``{question, annotator_id, answers: {system: {answer_string,
revised_answer_string, ...}}, metadata: {field, specific_field, question_type}}``. The answer
is the single system's ``revised_answer_string`` (expert-revised), else its
``answer_string``. ``metadata.field`` picks the dataset: ``Healthcare / Medicine`` ->
``expertqa_med``, ``Biology`` -> ``expertqa_bio``; other fields are quarantined as out of
scope. r1 lines (``answers: {}``) are quarantined with an explicit reason. Files without a
split in their name (r1/r2) default to ``train``.
"""

from __future__ import annotations

import pathlib
from typing import Any, Iterator, Mapping

from data_pipelines.importers.base import (
    FieldError, ImportOptions, Item, get_field, import_split_files, make_record, resolve_language, text,
)
from data_pipelines.importers.convert import convert_entries
from data_pipelines.importers.readers import load_json_lines

FIELD_TO_DATASET = {"Healthcare / Medicine": "expertqa_med", "Biology": "expertqa_bio"}


def import_expertqa(path: pathlib.Path, opts: ImportOptions) -> Iterator[Item]:
    lang = resolve_language(opts.language or "en")
    yield from import_split_files(path, (".jsonl",), opts, dataset="expertqa_med", language=lang,
                                  parse=load_json_lines, default_split="train",
                                  convert=lambda file, lines, split: _convert(file, lines, lang, split))


def pick_answer(answers: Any) -> tuple[str, str]:
    """``(system, answer)`` from the one system's revised answer, else its raw answer."""
    if not isinstance(answers, Mapping):
        raise FieldError("answers", "expected an object of system -> answer")
    if not answers:
        raise FieldError("answers", "no answer: empty 'answers' (r1 questions-only line)")
    if len(answers) > 1:
        raise FieldError("answers", f"several systems' answers {sorted(answers)}; cannot pick one")
    system, a = next(iter(answers.items()))
    for key in ("revised_answer_string", "answer_string"):
        value = a.get(key) if isinstance(a, Mapping) else None
        if isinstance(value, str) and value.strip():
            return system, value.strip()
    raise FieldError(f"answers.{system}", "empty revised_answer_string and answer_string")


def _metadata(obj: Any) -> tuple[Mapping[str, Any] | None, Any]:
    """(``metadata`` object, its ``field``); the field decides the dataset."""
    meta_in = obj.get("metadata") if isinstance(obj, Mapping) else None
    return meta_in, meta_in.get("field") if isinstance(meta_in, Mapping) else None


def _convert(file: pathlib.Path, lines: list[tuple[int, Any]], lang: str, split: str) -> Iterator[Item]:
    def context(obj: Any, idx: int) -> dict[str, Any]:
        return dict(dataset=FIELD_TO_DATASET.get(_metadata(obj)[1], "expertqa"), language=lang, split=split)

    def build(obj: Any, idx: int) -> Any:
        meta_in, field = _metadata(obj)
        if field not in FIELD_TO_DATASET:
            raise FieldError("metadata.field", f"out of scope: field {field!r} (kept: {sorted(FIELD_TO_DATASET)})")
        question = text(get_field(obj, "question"), "question")
        system, answer = pick_answer(get_field(obj, "answers"))
        meta = {k: meta_in[k] for k in ("specific_field", "question_type") if meta_in.get(k)}
        return make_record(
            dataset=FIELD_TO_DATASET[field], family="open_qa", language=lang, split=split,
            local_id=f"{file.stem}:{lines[idx][0]}",  # the line number
            question=question, answer=answer, meta={"system": system, **meta},
        )

    return convert_entries(file, [(f"line {n}", obj) for n, obj in lines], build, context)
