"""BioNLI importer: a simple JSONL or CSV (with header) of ``premise, hypothesis, label``.

No original BioNLI file was available (the upstream repo ships code only), so this reads the
plain export described in docs/data.md. SNLI-style names (``sentence1``, ``sentence2``,
``gold_label``) are accepted too. ``premise`` -> ``context``, ``hypothesis`` -> ``question``;
labels are lower-cased and common aliases mapped to NLI_LABELS (others are left for
validation to quarantine).
"""

from __future__ import annotations

import pathlib
from typing import Any, Iterator, Mapping

from data_pipelines.importers.base import FieldError, ImportOptions, Item, make_record, resolve_language, text
from data_pipelines.importers.convert import csv_entries, import_entries, line_entries

DATASET = "bionli"
LABEL_ALIASES = {
    "entailment": "entailment", "entail": "entailment", "entails": "entailment", "entailed": "entailment",
    "neutral": "neutral",
    "contradiction": "contradiction", "contradict": "contradiction", "contradicts": "contradiction",
    "contradictory": "contradiction",
}
_PREMISE = ("premise", "sentence1")
_HYPOTHESIS = ("hypothesis", "sentence2")
_LABEL = ("label", "gold_label")


def first_field(obj: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str, Any]:
    """The first present field among ``names`` (FieldError naming the first when none is)."""
    if not isinstance(obj, Mapping):
        raise FieldError("<record>", f"expected an object, got {type(obj).__name__}")
    for n in names:
        if n in obj:
            return n, obj[n]
    raise FieldError(names[0], "missing")


def nli_record(obj: Mapping[str, Any], *, dataset: str, lang: str, split: str, local: str) -> Any:
    """premise/hypothesis/label dict -> Record (shared with the globmed importer)."""
    pf, premise = first_field(obj, _PREMISE)
    hf, hyp = first_field(obj, _HYPOTHESIS)
    lf, label = first_field(obj, _LABEL)
    label_s = text(label, lf).lower()
    return make_record(
        dataset=dataset, family="nli", language=lang, split=split, local_id=local,
        question=text(hyp, hf), context=text(premise, pf), answer=LABEL_ALIASES.get(label_s, label_s),
    )


def import_bionli(path: pathlib.Path, opts: ImportOptions) -> Iterator[Item]:
    lang = resolve_language(opts.language or "en")
    yield from import_entries(
        path, (".jsonl", ".csv"), opts, dataset=DATASET, language=lang,
        read=lambda f: csv_entries(f) if f.suffix.lower() == ".csv" else line_entries(f),
        build=lambda obj, idx, split: nli_record(obj, dataset=DATASET, lang=lang, split=split, local=_local_id(obj, idx, split)))


def _local_id(obj: Any, idx: int, split: str) -> str:
    return str(obj.get("id")) if isinstance(obj, Mapping) and obj.get("id") not in (None, "") else f"{split}:{idx}"
