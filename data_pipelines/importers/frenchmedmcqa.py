"""FrenchMedMCQA importer (``corpus/{train,dev,test}.json``, JSON list).

Fields: ``id`` (sha256), ``question``, ``answers`` (dict ``"a".."e"``, lower-case),
``correct_answers`` (list of lower-case letters, 1..5 of them), ``subject_name``, ``type``,
``nbr_correct_answers``. The normalized schema has one gold letter, so single-answer items
are kept and multi-answer items are quarantined ("multiple correct answers").
"""

from __future__ import annotations

import pathlib
from typing import Any, Iterator, Mapping

from data_pipelines.importers.base import (
    BadRecord,
    FieldError,
    ImportOptions,
    Item,
    get_field,
    guarded_item,
    import_split_files,
    make_record,
    resolve_language,
    text,
)
from data_pipelines.importers.mcqa import answer_letter, options_from_mapping
from data_pipelines.importers.readers import LineError, load_json_array_or_lines

DATASET = "frenchmedmcqa"


def import_frenchmedmcqa(path: pathlib.Path, opts: ImportOptions) -> Iterator[Item]:
    lang = resolve_language(opts.language or "fr")
    yield from import_split_files(path, (".json", ".jsonl"), opts, dataset=DATASET, language=lang,
                                  parse=load_json_array_or_lines,
                                  convert=lambda file, items, split: _convert(file, items, lang, split))


def _convert(file: pathlib.Path, items: list[tuple[str, Any]], lang: str, split: str) -> Iterator[Item]:
    ctx = dict(dataset=DATASET, language=lang, split=split)
    for idx, (loc, obj) in enumerate(items):
        if isinstance(obj, LineError):
            yield BadRecord(str(file), loc, "<line>", obj.reason, obj.raw, **ctx)
            continue

        def build() -> Any:
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
                dataset=DATASET, task="mcqa", language=lang, split=split, local_id=local,
                question=text(get_field(obj, "question"), "question"), answer=letter, options=options, meta=meta,
            )

        yield guarded_item(build, file=file, location=loc, raw=obj, **ctx)
