"""Record <-> translatable fields, target ids, and writing the output directory.

Fields of a record, in order: ``question``, ``context``, ``option:A`` .. (mcqa),
``explanation`` and -- open_qa only -- ``answer`` (labels and letters are never translated).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Iterable, Mapping, Sequence

from data_pipelines.importers.normalized import QUARANTINE_NAME
from data_pipelines.jsonl_io import iter_quarantine
from globmed_jax.data.records_io import RecordWriter, record_id, record_path
from globmed_jax.data.families import get_family
from globmed_jax.data.schema import Record

OPTION_PREFIX = "option:"
QC_STAGE = "translation"  # the ``stage`` of quarantine entries this package writes


def record_fields(r: Record) -> list[tuple[str, str]]:
    """``[(field, text), ...]`` of the non-empty translatable fields of ``r``."""
    out = [("question", r.question)]
    if r.context:
        out.append(("context", r.context))
    out += [(f"{OPTION_PREFIX}{k}", v) for k, v in r.options.items()]
    if r.explanation:
        out.append(("explanation", r.explanation))
    if not get_family(r.family).closed and r.answer:
        out.append(("answer", r.answer))
    return out


def get_field(r: Record, field: str) -> str | None:
    if field.startswith(OPTION_PREFIX):
        return r.options.get(field[len(OPTION_PREFIX):])
    if field in ("question", "context", "explanation", "answer"):
        return getattr(r, field)
    raise KeyError(f"unknown field {field!r}")


def with_fields(r: Record, texts: Mapping[str, str], **changes: Any) -> Record:
    """``r`` with the given field texts replaced (other fields unchanged)."""
    options = dict(r.options)
    plain = {}
    for field, text in texts.items():
        if field.startswith(OPTION_PREFIX):
            letter = field[len(OPTION_PREFIX):]
            if letter not in options:
                raise KeyError(f"record {r.id} has no option {letter}")
            options[letter] = text
        elif field in ("question", "context", "explanation", "answer"):
            plain[field] = text
        else:
            raise KeyError(f"unknown field {field!r}")
    return dataclasses.replace(r, options=options, **plain, **changes)


def target_id(r: Record, language: str) -> str:
    """The id of ``r``'s translation: ``<source_id>@<lang>`` for ids of the one convention
    (``<source_id>@<source lang>``, as importers and GlobMed-mini write them), else ``<id>@<lang>``."""
    if r.id == record_id(r.source_id, r.language):
        return record_id(r.source_id, language)
    return f"{r.id}@{language}"


def quarantine_entry(record: Record, reasons: Sequence[str], issues: Sequence[Mapping[str, str]],
                     source_record_id: str) -> dict[str, Any]:
    """A quarantine line: the ``BadRecord`` fields (``iter_quarantine`` reads it) plus
    ``reasons`` (QC check names), ``issues`` and ``stage``."""
    first = issues[0] if issues else {"field": "*", "detail": "quarantined"}
    reason = "; ".join(f"{i['check']} ({i['field']}): {i['detail']}" for i in issues) or ", ".join(reasons)
    return {"file": "<translate>", "location": source_record_id, "field": first["field"], "reason": reason,
            "raw": record.to_json(), "dataset": record.dataset, "language": record.language,
            "split": record.split, "stage": QC_STAGE, "reasons": list(reasons), "issues": list(issues)}


OutKey = tuple[str, str, str]  # (dataset, language, split)


def read_quarantine(output_dir: str | pathlib.Path) -> list[dict[str, Any]]:
    path = pathlib.Path(output_dir) / QUARANTINE_NAME
    return list(iter_quarantine(path)) if path.exists() else []


def write_outputs(output_dir: str | pathlib.Path, records: Iterable[Record], quarantined: Iterable[dict[str, Any]],
                  owned: Iterable[OutKey]) -> dict[OutKey, pathlib.Path]:
    """Rewrites the record files of the ``owned`` (dataset, language, split) keys and the
    quarantine lines of those keys; files and quarantine lines of other keys are kept."""
    out = pathlib.Path(output_dir)
    owned = set(owned)
    for key in owned:
        path = record_path(out, *key)
        if path.exists():
            path.unlink()
    kept = [q for q in read_quarantine(out) if (q.get("dataset"), q.get("language"), q.get("split")) not in owned]
    with RecordWriter(out) as writer:
        for r in records:
            writer.write(r)
    qpath = out / QUARANTINE_NAME
    tmp = qpath.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for q in [*kept, *quarantined]:
            fh.write(json.dumps(q, ensure_ascii=False, default=str) + "\n")
    tmp.replace(qpath)
    return dict(writer.paths)
