"""PubMedQA importer (``ori_pqal.json`` / ``ori_pqaa.json`` / ``test_set.json`` layout).

Each file is one JSON *object* keyed by PMID: ``{QUESTION, CONTEXTS[list], LABELS, MESHES,
YEAR, final_decision, LONG_ANSWER}``. ``CONTEXTS`` are joined with newlines into ``context``;
``LONG_ANSWER`` becomes ``explanation``. A ``test_ground_truth.json`` (``{PMID: label}``) next
to the data file defines the official test split (those PMIDs -> ``test``, the rest ->
``train``) and is cross-checked: a disagreeing ``final_decision`` is quarantined.
"""

from __future__ import annotations

import pathlib
from typing import Any, Iterator, Mapping

from data_pipelines.importers.base import (
    FieldError,
    FileFormatError,
    ImportOptions,
    Item,
    get_field,
    guarded_file,
    list_files,
    make_record,
    normalize_split,
    resolve_language,
    text,
)
from data_pipelines.importers.convert import convert_entries
from data_pipelines.importers.readers import load_json

DATASET = "pubmedqa"
GROUND_TRUTH = "test_ground_truth.json"


def import_pubmedqa(path: pathlib.Path, opts: ImportOptions) -> Iterator[Item]:
    lang = resolve_language(opts.language or "en")
    for file in list_files(path, (".json",)):
        if file.name == GROUND_TRUTH:
            continue  # auxiliary: read below together with its data file
        ctx = dict(dataset=DATASET, language=lang, split=normalize_split(opts.split) if opts.split else None)
        gt_file = file.parent / GROUND_TRUTH
        truth: Mapping[str, str] = {}
        if gt_file.is_file():
            try:
                truth = load_json(gt_file)
            except FileFormatError as e:
                yield e.to_bad_record(**ctx)
                continue
        yield from guarded_file(file, load_json, lambda doc: _convert(file, doc, truth, lang, opts), **ctx)


def _convert(file: pathlib.Path, doc: Any, truth: Mapping[str, str], lang: str, opts: ImportOptions) -> Iterator[Item]:
    if not isinstance(doc, Mapping):
        yield FileFormatError(file, "top level", "expected a JSON object keyed by PMID").to_bad_record(dataset=DATASET, language=lang)
        return
    pmids = list(doc)

    def split(idx: int) -> str:
        """``--split``, else the ground-truth file's test PMIDs are the test split."""
        return normalize_split(opts.split) if opts.split else ("test" if pmids[idx] in truth else "train")

    yield from convert_entries(
        file, [(f"PMID {pmid}", item) for pmid, item in doc.items()],
        lambda item, idx: _record(item, pmids[idx], truth, lang, split(idx)),
        lambda item, idx: dict(dataset=DATASET, language=lang, split=split(idx)))


def _record(item: Any, pmid: str, truth: Mapping[str, str], lang: str, split: str) -> Any:
    decision = text(get_field(item, "final_decision"), "final_decision").lower()
    if pmid in truth and str(truth[pmid]).lower() != decision:
        raise FieldError("final_decision", f"{decision!r} disagrees with {GROUND_TRUTH} ({truth[pmid]!r})")
    contexts = item.get("CONTEXTS") or []
    if not isinstance(contexts, list):
        raise FieldError("CONTEXTS", "expected a list")
    meta = {k.lower(): item[k] for k in ("YEAR", "LABELS", "MESHES") if item.get(k)}
    return make_record(
        dataset=DATASET, family="yes_no_maybe", language=lang, split=split, local_id=str(pmid),
        question=text(get_field(item, "QUESTION"), "QUESTION"), answer=decision,
        context="\n".join(text(c, "CONTEXTS", required=False) for c in contexts),
        explanation=text(item.get("LONG_ANSWER"), "LONG_ANSWER", required=False),
        meta={"pmid": str(pmid), **meta},
    )
