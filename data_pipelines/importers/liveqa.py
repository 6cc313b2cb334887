"""TREC 2017 LiveQA Medical importer (XML).

``<NLM-QUESTION qid>`` holds ``<Original-Question qfile|qFile>`` (both spellings occur) with
``<SUBJECT>``/``<MESSAGE>``, ``<NIST-PARAPHRASE>``, optionally ``<NLM-Summary>``, and
``<ReferenceAnswers>`` whose children are ``<RefAnswer>`` or ``<ReferenceAnswer>`` (both
occur) with ``<ANSWER>``. The answer is the first non-empty ANSWER with whitespace collapsed
(the XML is hard-wrapped); the question is SUBJECT + MESSAGE by default, or the paraphrase or
summary (``ImportOptions.question_source``).
"""

from __future__ import annotations

import pathlib
import xml.etree.ElementTree as ET
from typing import Any, Iterator

from data_pipelines.importers.base import (
    FieldError,
    FileFormatError,
    ImportOptions,
    Item,
    import_split_files,
    make_record,
    resolve_language,
    squash_ws,
)
from data_pipelines.importers.convert import convert_entries
from data_pipelines.importers.readers import parse_xml

DATASET = "liveqa"
QUESTION_SOURCES = ("original", "paraphrase", "summary")


def _text(el: ET.Element | None) -> str:
    return squash_ws("".join(el.itertext())) if el is not None else ""


def import_liveqa(path: pathlib.Path, opts: ImportOptions) -> Iterator[Item]:
    lang = resolve_language(opts.language or "en")
    yield from import_split_files(
        path, (".xml",), opts, dataset=DATASET, language=lang, parse=parse_xml,
        default_split="test",  # only the test XMLs are still published
        convert=lambda file, root, split: _convert(file, root, lang, split, opts.question_source))


def _raw(q: ET.Element) -> str:
    return ET.tostring(q, encoding="unicode")[:2000]


def _qid(q: ET.Element, i: int, split: str) -> str:
    return q.get("qid") or f"{split}:{i}"


def _convert(file: pathlib.Path, root: ET.Element, lang: str, split: str, qsource: str) -> Iterator[Item]:
    ctx = dict(dataset=DATASET, language=lang, split=split)
    questions = root.findall(".//NLM-QUESTION")
    if not questions:
        yield FileFormatError(file, f"<{root.tag}>", "no <NLM-QUESTION> elements (not a LiveQA file)").to_bad_record(**ctx)
        return
    entries = [(f"NLM-QUESTION {_qid(q, i, split)} (#{i + 1})", q) for i, q in enumerate(questions)]
    yield from convert_entries(file, entries, lambda q, i: _record(q, _qid(q, i, split), lang, split, qsource), ctx, shown=_raw)


def _record(q: ET.Element, qid: str, lang: str, split: str, qsource: str) -> Any:
    orig = q.find("Original-Question")
    subject = _text(orig.find("SUBJECT")) if orig is not None else ""
    message = _text(orig.find("MESSAGE")) if orig is not None else ""
    paraphrase = _text(q.find("NIST-PARAPHRASE"))
    summary = _text(q.find("NLM-Summary"))
    if qsource == "original":
        question, field = "\n".join(s for s in (subject, message) if s), "Original-Question"
    elif qsource == "paraphrase":
        question, field = paraphrase, "NIST-PARAPHRASE"
    elif qsource == "summary":
        question, field = summary, "NLM-Summary"
    else:
        raise FieldError("question_source", f"unknown {qsource!r}; choose from {QUESTION_SOURCES}")
    if not question:
        raise FieldError(field, "empty question")
    answers = [_text(a) for a in q.findall("./ReferenceAnswers/*/ANSWER")]
    answers = [a for a in answers if a]
    if not answers:
        raise FieldError("ANSWER", "no non-empty reference answer")
    qfile = orig.get("qfile") or orig.get("qFile") if orig is not None else None
    meta = {"qid": qid, "qfile": qfile, "paraphrase": paraphrase or None, "summary": summary or None,
            "n_reference_answers": len(answers)}
    return make_record(
        dataset=DATASET, family="open_qa", language=lang, split=split, local_id=qid,
        question=question, answer=answers[0], meta={k: v for k, v in meta.items() if v is not None},
    )
