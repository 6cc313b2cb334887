"""MMLU-Pro importer (JSON list or JSON lines), keeping the ``health`` category.

Fields: ``question_id`` (int), ``question``, ``options`` (3..10 strings), ``answer`` (letter),
``answer_index`` (0-based; must agree with ``answer``), ``cot_content``, ``category``, ``src``.
Evaluation-output fields (``pred``, ``model_outputs``) are dropped. Records of other
categories are quarantined as out of scope (counted, not silently dropped).
"""

from __future__ import annotations

import pathlib
from typing import Any, Iterator

from data_pipelines.importers.base import FieldError, ImportOptions, Item, get_field, make_record, resolve_language, text
from data_pipelines.importers.convert import Entry, import_entries, json_entries
from data_pipelines.importers.mcqa import answer_letter, options_from_list

DATASET = "mmlu_pro"
KEEP_CATEGORIES = ("health",)
DROP_FIELDS = ("pred", "model_outputs")


def _read(file: pathlib.Path) -> list[Entry]:
    """Entries without the evaluation-output fields (also in what quarantine keeps)."""
    return [(loc, {k: v for k, v in obj.items() if k not in DROP_FIELDS} if isinstance(obj, dict) else obj)
            for loc, obj in json_entries(file)]


def import_mmlu_pro(path: pathlib.Path, opts: ImportOptions) -> Iterator[Item]:
    lang = resolve_language(opts.language or "en")
    yield from import_entries(path, (".json", ".jsonl"), opts, dataset=DATASET, language=lang, read=_read,
                              build=lambda obj, idx, split: _record(obj, lang, split),
                              default_split="test")  # a test benchmark


def _record(obj: Any, lang: str, split: str) -> Any:
    if isinstance(obj, dict) and obj.get("category") not in KEEP_CATEGORIES:
        raise FieldError("category", f"out of scope: category {obj.get('category')!r} (kept: {KEEP_CATEGORIES})")
    raw_opts = get_field(obj, "options")
    if not isinstance(raw_opts, list):
        raise FieldError("options", "expected a list")
    options = options_from_list(raw_opts)
    letter = answer_letter(get_field(obj, "answer"), options, fmt="letter")
    if "answer_index" in obj and answer_letter(obj["answer_index"], options, fmt="index0", field="answer_index") != letter:
        raise FieldError("answer_index", f"answer_index {obj['answer_index']} disagrees with answer {letter!r}")
    return make_record(
        dataset=DATASET, family="mcqa", language=lang, split=split,
        local_id=text(get_field(obj, "question_id"), "question_id"),
        question=text(get_field(obj, "question"), "question"), answer=letter, options=options,
        explanation=text(obj.get("cot_content"), "cot_content", required=False),
        meta={k: obj[k] for k in ("category", "src") if obj.get(k)},
    )
