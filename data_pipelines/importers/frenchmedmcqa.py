"""FrenchMedMCQA importer (``corpus/{train,dev,test}.json``, JSON list).

Fields: ``id`` (sha256), ``question``, ``answers`` (dict ``"a".."e"``, lower-case),
``correct_answers`` (list of lower-case letters, 1..5 of them), ``subject_name``, ``type``,
``nbr_correct_answers``. The normalized schema has one gold letter, so single-answer items
are kept and multi-answer items are quarantined ("multiple correct answers").
"""

from __future__ import annotations

import pathlib
from typing import Any, Iterator, Mapping

from data_pipelines.importers.base import FieldError, ImportOptions, Item, get_field, make_record, resolve_language, text
from data_pipelines.importers.convert import import_entries, json_entries
from data_pipelines.importers.mcqa import answer_letter, options_from_mapping

DATASET = "frenchmedmcqa"


def import_frenchmedmcqa(path: pathlib.Path, opts: ImportOptions) -> Iterator[Item]:
    lang = resolve_language(opts.language or "fr")
    yield from import_entries(path, (".json", ".jsonl"), opts, dataset=DATASET, language=lang, read=json_entries,
                              build=lambda obj, idx, split: _record(obj, idx, lang, split))


def _record(obj: Any, idx: int, lang: str, split: str) -> Any:
    raw_opts = get_field(obj, "answers")
    if not isinstance(raw_opts, Mapping):
        raise FieldError("answers", "expected an object keyed 'a'..'e'")
    options, keys = options_from_mapping(raw_opts, "answers")
    correct = get_field(obj, "correct_answers")
    if not isinstance(correct, list) or not correct:
        raise FieldError("correct_answers", "expected a non-empty list of letters")
    if len(correct) > 1:
        raise FieldError("correct_answers", f"multiple correct answers {correct}")
    letter = answer_letter(correct[0], options, key_map=keys, fmt="letter", field="correct_answers")
    local = text(obj.get("id"), "id", required=False) or f"{split}:{idx}"
    meta = {k: obj[k] for k in ("subject_name", "type") if obj.get(k)}
    return make_record(
        dataset=DATASET, family="mcqa", language=lang, split=split, local_id=local,
        question=text(get_field(obj, "question"), "question"), answer=letter, options=options, meta=meta,
    )
