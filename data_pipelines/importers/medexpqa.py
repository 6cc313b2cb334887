"""MedExpQA importer (HiTZ jsonl, e.g. ``train.en.casimedicos.rag.jsonl``).

Fields used: ``id`` (shared by the en/es/fr/it versions -> ``source_id``), ``full_question``,
``options`` (dict ``"1".."5"``), ``correct_option`` (1-based int), ``full_answer``
(-> ``explanation``), ``type``, ``year``, ``lang``. Trailing empty options (4-option exams
padded to 5) are removed. Language: ``lang`` field, else a language token in the file name,
else ``en``. No real sample was available; tests use a written file.
"""

from __future__ import annotations

import pathlib
from typing import Any, Iterator, Mapping

from data_pipelines.importers.base import (
    FieldError, ImportOptions, Item, file_split, get_field, guarded_file, list_files, make_record, no_split_error,
    resolve_language, text,
)
from data_pipelines.importers.convert import Entry, convert_entries, line_entries
from data_pipelines.importers.mcqa import answer_letter, options_from_mapping
from globmed_jax.data.languages import LANGUAGES

DATASET = "medexpqa"


def _name_language(file: pathlib.Path) -> str | None:
    tokens = file.name.lower().replace("-", ".").replace("_", ".").split(".")
    return next((t for t in tokens if t in LANGUAGES), None)


def import_medexpqa(path: pathlib.Path, opts: ImportOptions) -> Iterator[Item]:
    for file in list_files(path, (".jsonl",)):
        split = file_split(file, opts)
        file_lang = opts.language or _name_language(file)
        ctx = dict(dataset=DATASET, language=file_lang, split=split)
        if split is None:
            yield no_split_error(file, **ctx)
            continue

        yield from guarded_file(file, line_entries, lambda entries: _convert(file, entries, opts.language, file_lang, split), **ctx)


def _convert(file: pathlib.Path, entries: list[Entry], forced: str | None, file_lang: str | None, split: str) -> Iterator[Item]:
    def language(obj: Any) -> str:
        """``--language``, else the record's ``lang``, else the file name's, else en."""
        return resolve_language(str(forced or (obj.get("lang") if isinstance(obj, Mapping) else None) or file_lang or "en"))

    return convert_entries(file, entries, lambda obj, idx: _record(obj, idx, language(obj), split),
                           lambda obj, idx: dict(dataset=DATASET, language=language(obj), split=split))


def _record(obj: Any, idx: int, lang: str, split: str) -> Any:
    raw_opts = get_field(obj, "options")
    if not isinstance(raw_opts, Mapping):
        raise FieldError("options", "expected an object keyed '1'..'5'")
    options, _ = options_from_mapping(raw_opts)
    while options and not options[max(options)]:
        del options[max(options)]  # 4-option exam padded with an empty 5th option
    correct = get_field(obj, "correct_option")
    letter = answer_letter(correct, options, fmt="index1", field="correct_option")
    local = text(obj.get("id"), "id", required=False) or f"{split}:{idx}"
    meta = {k: obj[k] for k in ("type", "year", "question_id_specific") if obj.get(k) is not None}
    return make_record(
        dataset=DATASET, family="mcqa", language=lang, split=split, local_id=local,
        question=text(get_field(obj, "full_question"), "full_question"), answer=letter,
        options=options, explanation=text(obj.get("full_answer"), "full_answer", required=False), meta=meta,
    )
