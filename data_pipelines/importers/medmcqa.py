"""MedMCQA importer: ``{id, question, opa, opb, opc, opd, cop, exp, subject_name, ...}``.

The original release (``train.json``/``dev.json``, JSON lines despite the suffix) has a
**1-based** ``cop``; the HF copy is 0-based and marks the unlabelled test split ``cop=-1``.
``ImportOptions.cop_base`` selects the base (default 1); a value impossible for that base is
quarantined, never silently shifted.
"""

from __future__ import annotations

import pathlib
from typing import Any, Iterator

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
from data_pipelines.importers.readers import LineError, load_json_array_or_lines

DATASET = "medmcqa"
OPTION_FIELDS = ("opa", "opb", "opc", "opd")


def cop_to_letter(cop: Any, base: int, n_options: int = 4) -> str:
    """``cop`` (0- or 1-based int) -> letter; FieldError for -1/missing/out of range."""
    if cop is None or isinstance(cop, bool):
        raise FieldError("cop", "missing gold answer (unlabelled split?)")
    try:
        idx = int(cop) - base
    except (TypeError, ValueError):
        raise FieldError("cop", f"cop {cop!r} is not an integer") from None
    if int(cop) == -1:
        raise FieldError("cop", "cop = -1: no gold answer (unlabelled test split)")
    if not 0 <= idx < n_options:
        raise FieldError("cop", f"cop {cop!r} out of range for {base}-based encoding of {n_options} options")
    return "ABCDEFGHIJ"[idx]


def import_medmcqa(path: pathlib.Path, opts: ImportOptions) -> Iterator[Item]:
    lang = resolve_language(opts.language or "en")
    base = 1 if opts.cop_base is None else opts.cop_base
    yield from import_split_files(path, (".json", ".jsonl"), opts, dataset=DATASET, language=lang,
                                  parse=load_json_array_or_lines,
                                  convert=lambda file, items, split: _convert(file, items, lang, split, base))


def _convert(file: pathlib.Path, items: list[tuple[str, Any]], lang: str, split: str, base: int) -> Iterator[Item]:
    for idx, (loc, obj) in enumerate(items):
        if isinstance(obj, LineError):
            yield BadRecord(str(file), loc, "<line>", obj.reason, obj.raw, DATASET, lang, split)
            continue

        def build() -> Any:
            options = {"ABCD"[i]: text(get_field(obj, f), f, required=False) for i, f in enumerate(OPTION_FIELDS)}
            local = text(obj.get("id"), "id", required=False) or f"{split}:{idx}"
            meta = {k: obj[k] for k in ("subject_name", "topic_name", "choice_type") if obj.get(k)}
            return make_record(
                dataset=DATASET, task="mcqa", language=lang, split=split, local_id=local,
                question=text(get_field(obj, "question"), "question"),
                answer=cop_to_letter(obj.get("cop"), base), options=options,
                explanation=text(obj.get("exp"), "exp", required=False), meta=meta,
            )

        yield guarded_item(build, file=file, location=loc, raw=obj, dataset=DATASET, language=lang, split=split)
