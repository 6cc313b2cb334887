"""MedQA (USMLE) importer: the original jsonl and the AfriMed-QA CSV re-export.

jsonl: ``{question, options{A..}, answer_idx (letter), answer (text), meta_info}``.
CSV: pandas export with an unnamed index column, ``options`` as a *Python dict repr*
(parsed with ``ast.literal_eval``, never eval), ``correct_answer`` letter, ``answer_words``.
The row position (jsonl line order / CSV index column) is the local id, so both exports of
the same item share a ``source_id``.
"""

from __future__ import annotations

import ast
import pathlib
from typing import Any, Iterator, Mapping

from data_pipelines.importers.base import (
    FieldError, ImportOptions, Item, get_field, import_split_files, make_record, resolve_language, text,
)
from data_pipelines.importers.convert import convert_entries, csv_entries, line_entries
from data_pipelines.importers.mcqa import answer_letter, parse_options

DATASET = "medqa"


def _is_csv(file: pathlib.Path) -> bool:
    return file.suffix.lower() == ".csv"


def import_medqa(path: pathlib.Path, opts: ImportOptions) -> Iterator[Item]:
    """Yields MedQA records from ``.jsonl`` and ``.csv`` files under ``path``."""
    lang = resolve_language(opts.language or "en")

    def convert(file: pathlib.Path, entries: list, split: str) -> Iterator[Item]:
        build = _from_csv if _is_csv(file) else _from_jsonl
        ctx = dict(dataset=DATASET, language=lang, split=split)
        return convert_entries(file, entries, lambda obj, idx: build(obj, idx, lang, split), ctx)

    yield from import_split_files(path, (".jsonl", ".csv"), opts, dataset=DATASET, language=lang,
                                  parse=lambda f: csv_entries(f) if _is_csv(f) else line_entries(f), convert=convert)


def _record(
    *, question: Any, options: Any, answer: Any, answer_text: Any, local: str, lang: str, split: str,
    meta: Mapping[str, Any], answer_field: str, text_field: str,
) -> Any:
    opts, keys = parse_options(options)
    letter = answer_letter(answer, opts, key_map=keys, fmt="letter", field=answer_field)
    # The two gold encodings must agree; a disagreement means a corrupted export.
    if answer_text is not None and letter in opts and text(answer_text, text_field, required=False) != opts[letter]:
        raise FieldError(text_field, f"answer text disagrees with option {letter}")
    return make_record(
        dataset=DATASET, family="mcqa", language=lang, split=split, local_id=f"{split}:{local}",
        question=text(question, "question"), answer=letter, options=opts, meta=meta,
    )


def _from_jsonl(obj: Any, idx: int, lang: str, split: str) -> Any:
    return _record(
        question=get_field(obj, "question"), options=get_field(obj, "options"),
        answer=get_field(obj, "answer_idx"), answer_text=obj.get("answer"), local=str(idx),
        lang=lang, split=split, meta={"meta_info": obj.get("meta_info")} if obj.get("meta_info") else {},
        answer_field="answer_idx", text_field="answer",
    )


def _literal_options(s: str) -> dict:
    """Python-dict-repr options via ast.literal_eval (safe: literals only, no code)."""
    try:
        value = ast.literal_eval(s)
    except (ValueError, SyntaxError) as e:
        raise FieldError("options", f"not a Python dict literal: {e}") from None
    if not isinstance(value, dict):
        raise FieldError("options", f"expected a dict literal, got {type(value).__name__}")
    return value


def _from_csv(obj: dict[str, str], idx: int, lang: str, split: str) -> Any:
    return _record(
        question=get_field(obj, "question"), options=_literal_options(get_field(obj, "options")),
        answer=get_field(obj, "correct_answer"), answer_text=obj.get("answer_words"),
        local=obj.get("") or str(idx),  # pandas index column = original position
        lang=lang, split=split, meta={k: obj[k] for k in ("meta_info", "sample_id") if obj.get(k)},
        answer_field="correct_answer", text_field="answer_words",
    )
