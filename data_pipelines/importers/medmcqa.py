"""MedMCQA importer: ``{id, question, opa, opb, opc, opd, cop, exp, subject_name, ...}``.

The original release (``train.json``/``dev.json``, JSON lines despite the suffix) has a
**1-based** ``cop``; the HF copy is 0-based and marks the unlabelled test split ``cop=-1``.
``ImportOptions.cop_base`` selects the base (default 1); a value impossible for that base is
quarantined, never silently shifted.
"""

from __future__ import annotations

import pathlib
from typing import Any, Iterator

from data_pipelines.importers.base import FieldError, ImportOptions, Item, get_field, make_record, resolve_language, text
from data_pipelines.importers.convert import import_entries, json_entries
from data_pipelines.importers.mcqa import integer

DATASET = "medmcqa"
OPTION_FIELDS = ("opa", "opb", "opc", "opd")


def cop_to_letter(cop: Any, base: int, n_options: int = 4) -> str:
    """``cop`` (0- or 1-based int) -> letter; FieldError for -1/missing/out of range."""
    if cop is None:
        raise FieldError("cop", "missing gold answer (unlabelled split?)")
    idx = integer(cop, "cop") - base
    if integer(cop, "cop") == -1:
        raise FieldError("cop", "cop = -1: no gold answer (unlabelled test split)")
    if not 0 <= idx < n_options:
        raise FieldError("cop", f"cop {cop!r} out of range for {base}-based encoding of {n_options} options")
    return "ABCDEFGHIJ"[idx]


def import_medmcqa(path: pathlib.Path, opts: ImportOptions) -> Iterator[Item]:
    lang = resolve_language(opts.language or "en")
    base = 1 if opts.cop_base is None else opts.cop_base
    yield from import_entries(path, (".json", ".jsonl"), opts, dataset=DATASET, language=lang, read=json_entries,
                              build=lambda obj, idx, split: _record(obj, idx, lang, split, base))


def _record(obj: Any, idx: int, lang: str, split: str, base: int) -> Any:
    options = {"ABCD"[i]: text(get_field(obj, f), f, required=False) for i, f in enumerate(OPTION_FIELDS)}
    local = text(obj.get("id"), "id", required=False) or f"{split}:{idx}"
    meta = {k: obj[k] for k in ("subject_name", "topic_name", "choice_type") if obj.get(k)}
    return make_record(
        dataset=DATASET, family="mcqa", language=lang, split=split, local_id=local,
        question=text(get_field(obj, "question"), "question"),
        answer=cop_to_letter(obj.get("cop"), base), options=options,
        explanation=text(obj.get("exp"), "exp", required=False), meta=meta,
    )
