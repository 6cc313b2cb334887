"""HEAD-QA v1.0 importer (original release JSON; es and en).

Layout: ``{version, language, exams: {name: {name, category, year, data: [{qid, qtext, ra,
answers: [{aid, atext}], image}]}}}``. ``ra`` is the *string* aid of the right answer and
``aid`` an int (1-based), so options are ordered by aid and ``ra`` maps through the aid.
``source_id`` is ``headqa:<exam>:<qid>``, identical in the es and en files.

``<exam>.gold`` files (TSV ``qid<TAB>aid``) next to the JSON are used as a cross-check: a
question whose ``ra`` disagrees with its exam's gold file is quarantined.
"""

from __future__ import annotations

import pathlib
from typing import Any, Iterator, Mapping

from data_pipelines.importers.base import (
    FieldError,
    ImportOptions,
    Item,
    get_field,
    import_split_files,
    make_record,
    resolve_language,
    text,
)
from data_pipelines.importers.convert import convert_entries
from data_pipelines.importers.mcqa import options_from_mapping
from data_pipelines.importers.readers import FileFormatError, load_json, read_text

DATASET = "headqa"


def read_gold(path: pathlib.Path) -> dict[str, str]:
    """A HEAD-QA ``.gold`` file: ``{qid: aid}`` (both strings)."""
    gold: dict[str, str] = {}
    for i, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise FileFormatError(path, f"line {i}", f"expected 'qid<TAB>aid', got {len(parts)} fields", line)
        gold[parts[0].strip()] = parts[1].strip()
    return gold


def import_headqa(path: pathlib.Path, opts: ImportOptions) -> Iterator[Item]:
    yield from import_split_files(path, (".json",), opts, dataset=DATASET, language=opts.language,
                                  parse=load_json, convert=lambda file, doc, split: _convert(file, doc, opts, split))


def _golds(folder: pathlib.Path) -> dict[str, dict[str, str] | FileFormatError]:
    out: dict[str, dict[str, str] | FileFormatError] = {}
    for g in sorted(folder.glob("*.gold")):
        try:
            out[g.stem] = read_gold(g)
        except FileFormatError as e:
            out[g.stem] = e
    return out


def _convert(file: pathlib.Path, doc: Any, opts: ImportOptions, split: str) -> Iterator[Item]:
    lang = resolve_language(opts.language or (doc.get("language") if isinstance(doc, Mapping) else None) or "es")
    ctx = dict(dataset=DATASET, language=lang, split=split)
    exams = doc.get("exams") if isinstance(doc, Mapping) else None
    if not isinstance(exams, Mapping):
        yield FileFormatError(file, "top level", "no 'exams' object (not a HEAD-QA v1 file)").to_bad_record(**ctx)
        return
    golds = _golds(file.parent)
    for exam_key, exam in exams.items():
        gold = golds.get(exam_key)
        if isinstance(gold, FileFormatError):
            yield gold.to_bad_record(**ctx)
            gold = None
        data = exam.get("data", []) if isinstance(exam, Mapping) else []
        entries = [(f"exam {exam_key} record {i}", q) for i, q in enumerate(data)]
        yield from convert_entries(file, entries, lambda q, i: _record(q, exam_key, exam, gold, lang, split), ctx)


def _record(q: Any, exam_key: str, exam: Mapping[str, Any], gold: Mapping[str, str] | None, lang: str, split: str) -> Any:
    qid = text(get_field(q, "qid"), "qid")
    answers = get_field(q, "answers")
    if not isinstance(answers, list):
        raise FieldError("answers", "expected a list")
    by_aid = {str(get_field(a, "aid")): a.get("atext") for a in answers}
    options, keys = options_from_mapping(by_aid, "answers")
    ra = text(get_field(q, "ra"), "ra")
    if gold is not None and qid in gold and gold[qid] != ra:
        raise FieldError("ra", f"ra {ra!r} disagrees with {exam_key}.gold ({gold[qid]!r})")
    if ra not in keys:
        raise FieldError("ra", f"ra {ra!r} is not among the answer aids {sorted(keys)}")
    meta = {"exam": exam_key, "category": exam.get("category"), "year": exam.get("year")}
    if q.get("image"):
        meta["image"] = q["image"]
    return make_record(
        dataset=DATASET, family="mcqa", language=lang, split=split, local_id=f"{exam_key}:{qid}",
        question=text(get_field(q, "qtext"), "qtext"),
        answer=keys[ra],
        options=options, meta={k: v for k, v in meta.items() if v is not None},
    )
