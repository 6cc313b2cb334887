"""Human review: export translations to a CSV for experts, import their scores and revisions.

Export (``--export-review FILE``): one row per translated field of every output record (and,
unless ``status="passed"``, of every quarantined one) with columns

    id, dataset, split, language, field, status, qc_reasons, chrf, source_text, translation,
    back_translation, accuracy, fluency, completeness, revised_translation

The last four are empty for the reviewer: ``accuracy`` / ``fluency`` / ``completeness`` take
an integer 1-5, ``revised_translation`` the corrected text.

Import (``--apply-review FILE``): a non-empty ``revised_translation`` replaces the field's text;
scores (and whether the text was revised) go to ``meta["review"]``. A quarantined record whose
every translated field was reviewed (scored or revised) is re-checked -- the structural QC
checks (numbers, options, empty fields, placeholder remnants) and ``data_pipelines.validate``
-- and promoted back to the output when it passes (``meta["review"]["promoted_from_quarantine"]``
keeps the old reasons). Every output record is validated again afterwards; reviews are also
stored in the translation cache so a later translation run re-applies them.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import logging
import pathlib
import random
from typing import Any, Mapping, Sequence

from globmed_jax.data.records_io import load_records
from data_pipelines.translate.cache import TranslationCache
from data_pipelines.translate.qc import FieldResult, Issue, structural_issues
from data_pipelines.translate.records import (
    OPTION_PREFIX, QC_STAGE, get_field, quarantine_entry, read_quarantine, record_fields, with_fields,
    write_outputs)
from data_pipelines.validate import Validator
from globmed_jax.data.schema import Record

log = logging.getLogger(__name__)

SCORES = ("accuracy", "fluency", "completeness")
COLUMNS = ("id", "dataset", "split", "language", "field", "status", "qc_reasons", "chrf", "source_text",
           "translation", "back_translation", *SCORES, "revised_translation")
REQUIRED = ("id", "field", *SCORES, "revised_translation")


class ReviewError(ValueError):
    """A review CSV that cannot be applied (names the file, row and column)."""


# ------------------------------------------------------------------------------- shared


def apply_reviews(record: Record, reviews: Mapping[str, Mapping[str, Any]]) -> Record:
    """``record`` with revised texts applied and ``meta["review"]`` set (no-op without reviews)."""
    if not reviews:
        return record
    texts = {f: rv["revised"] for f, rv in reviews.items() if rv.get("revised", "").strip()}
    texts = {f: t for f, t in texts.items() if _has_field(record, f)}
    meta = dict(record.meta)
    review = dict(meta.get("review", {}))
    fields = dict(review.get("fields", {}))
    for f, rv in reviews.items():
        fields[f] = {**{k: rv["scores"].get(k) for k in SCORES}, "revised": bool(rv.get("revised", "").strip())}
    review["fields"] = fields
    review["files"] = sorted({*review.get("files", ()), *(rv.get("file", "") for rv in reviews.values())} - {""})
    meta["review"] = review
    return with_fields(record, texts, meta=meta)


def _has_field(record: Record, field: str) -> bool:
    try:
        return get_field(record, field) is not None
    except KeyError:
        return False


def fully_reviewed(record: Record, reviews: Mapping[str, Any]) -> bool:
    """Every translated field of ``record`` has a review row (scores or a revision)."""
    return bool(reviews) and all(f in reviews for f, _ in record_fields(record))


def recheck(record: Record, source_texts: Mapping[str, str], source_option_letters: Sequence[str]) -> list[Issue]:
    """Structural QC + record validation for a (reviewed) record."""
    fields = [FieldResult(f, source_texts.get(f, ""), text) for f, text in record_fields(record)]
    src_options = {letter: source_texts.get(f"{OPTION_PREFIX}{letter}", "") for letter in source_option_letters}
    issues = structural_issues(fields, src_options, record.options)
    from data_pipelines.validate import check_record

    issues += [Issue("validation", f, msg) for f, msg in check_record(record)]
    return issues


# ------------------------------------------------------------------------------- export


def export_review(output_dir: str | pathlib.Path, path: str | pathlib.Path, *, status: str = "all",
                  per_language: int = 0, seed: int = 0, languages: Sequence[str] = ()) -> int:
    """Writes the review CSV (UTF-8 with BOM, so spreadsheets open it right); returns the row
    count. ``per_language``: a seeded random sample of that many records per language (0 = all)."""
    if status not in ("all", "passed", "quarantined"):
        raise ValueError(f"status must be all, passed or quarantined, got {status!r}")
    out = pathlib.Path(output_dir)
    with TranslationCache.in_dir(out) as cache:
        details = cache.fields()
    items: list[tuple[Record, str, str]] = []
    if status in ("all", "passed"):
        for r in load_records(out):
            if "translation" in r.meta:
                items.append((r, "passed", ""))
    if status in ("all", "quarantined"):
        for q in read_quarantine(out):
            if q.get("stage") == QC_STAGE:
                items.append((Record.from_json(q["raw"]), "quarantined", ",".join(q.get("reasons", ()))))
    if languages:
        items = [it for it in items if it[0].language in languages]
    if per_language:
        by_lang = collections.defaultdict(list)
        for it in items:
            by_lang[it[0].language].append(it)
        rng = random.Random(seed)
        items = [it for lang in sorted(by_lang) for it in
                 sorted(rng.sample(by_lang[lang], min(per_language, len(by_lang[lang]))), key=lambda x: x[0].id)]
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r, st, reasons in items:
            for field, text in record_fields(r):
                d = details.get((r.id, field), {})
                score = d.get("chrf")
                w.writerow({"id": r.id, "dataset": r.dataset, "split": r.split, "language": r.language,
                            "field": field, "status": st, "qc_reasons": reasons,
                            "chrf": "" if score is None else f"{score:.1f}", "source_text": d.get("source_text", ""),
                            "translation": text, "back_translation": d.get("back_translation") or "",
                            **{k: "" for k in SCORES}, "revised_translation": ""})
                n += 1
    log.info("review CSV %s: %d rows (%d records)", path, n, len(items))
    return n


# ------------------------------------------------------------------------------- import


@dataclasses.dataclass
class ReviewResult:
    rows: int = 0  # rows with a score or a revision
    revised_fields: int = 0
    records_changed: int = 0
    promoted: int = 0
    still_quarantined: int = 0
    validation_failures: int = 0
    unmatched: list[str] = dataclasses.field(default_factory=list)  # ids not in the output

    def summary(self) -> str:
        return (f"{self.rows} reviewed row(s), {self.revised_fields} revised field(s), {self.records_changed} record(s) "
                f"changed, {self.promoted} promoted from quarantine, {self.still_quarantined} reviewed but still "
                f"quarantined, {self.validation_failures} failed validation, {len(self.unmatched)} unmatched id(s)")


def read_review(path: str | pathlib.Path) -> dict[str, dict[str, dict[str, Any]]]:
    """``{record_id: {field: {"revised", "scores", "file"}}}`` of the rows a reviewer filled in."""
    path = pathlib.Path(path)
    try:
        fh = path.open(encoding="utf-8-sig", newline="")
    except OSError as e:
        raise ReviewError(f"review file {path}: {e}") from None
    out: dict[str, dict[str, dict[str, Any]]] = {}
    with fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or ())]
        if missing:
            raise ReviewError(f"review file {path}: missing column(s) {missing}")
        for lineno, row in enumerate(reader, start=2):
            scores = {}
            for k in SCORES:
                v = (row.get(k) or "").strip()
                if not v:
                    continue
                try:
                    score = int(float(v))
                except ValueError:
                    score = None
                if score is None or not 1 <= score <= 5 or float(v) != score:
                    raise ReviewError(f"review file {path}: line {lineno}: column {k!r}: {v!r} is not an integer 1-5")
                scores[k] = score
            revised = (row.get("revised_translation") or "").strip()
            if not scores and not revised:
                continue
            rid, field = (row.get("id") or "").strip(), (row.get("field") or "").strip()
            if not rid or not field:
                raise ReviewError(f"review file {path}: line {lineno}: empty id or field")
            out.setdefault(rid, {})[field] = {"revised": revised, "scores": scores, "file": path.name}
    return out


def apply_review(path: str | pathlib.Path, output_dir: str | pathlib.Path) -> ReviewResult:
    """Applies a filled-in review CSV to an output directory (see the module docstring)."""
    out = pathlib.Path(output_dir)
    reviews = read_review(path)
    result = ReviewResult(rows=sum(len(v) for v in reviews.values()))
    passed = load_records(out)
    quarantine = read_quarantine(out)
    with TranslationCache.in_dir(out) as cache:
        details = cache.fields()
        cache.put_reviews((rid, f, rv["revised"], rv["scores"], rv["file"])
                          for rid, fields in reviews.items() for f, rv in fields.items())
        stored = cache.reviews()
    known = {r.id for r in passed} | {q["raw"]["id"] for q in quarantine if q.get("stage") == QC_STAGE}
    result.unmatched = sorted(set(reviews) - known)
    for rid in result.unmatched:
        log.warning("review: id %s is not in %s", rid, out)
    result.revised_fields = sum(1 for rid, fs in reviews.items() if rid in known for rv in fs.values() if rv["revised"])

    def sources(r: Record) -> dict[str, str]:
        return {f: details[(r.id, f)]["source_text"] for f, _ in record_fields(r) if (r.id, f) in details}

    candidates: list[Record] = []
    for r in passed:
        new = apply_reviews(r, reviews.get(r.id, {}))
        result.records_changed += new != r
        candidates.append(new)
    new_quarantine = []
    for q in quarantine:
        if q.get("stage") != QC_STAGE or q["raw"]["id"] not in reviews:
            new_quarantine.append(q)
            continue
        r = Record.from_json(q["raw"])
        new = apply_reviews(r, stored.get(r.id, {}))
        result.records_changed += new != r
        letters = list(r.options)
        if fully_reviewed(new, stored.get(r.id, {})) and not recheck(new, sources(new), letters):
            meta = dict(new.meta)
            meta["review"] = {**meta["review"], "promoted_from_quarantine": list(q.get("reasons", ()))}
            candidates.append(dataclasses.replace(new, meta=meta))
            result.promoted += 1
        else:
            result.still_quarantined += 1
            issues = [i.to_json() for i in recheck(new, sources(new), letters)] or q.get("issues", [])
            entry = quarantine_entry(new, q.get("reasons", ()), issues, q.get("location", ""))
            entry["reasons"] = sorted(set(q.get("reasons", ())) | {i["check"] for i in issues})
            new_quarantine.append(entry)
    validator = Validator()
    kept = []
    for r in candidates:
        issues = validator.check(r, "review")
        if issues:
            result.validation_failures += 1
            new_quarantine.append(quarantine_entry(
                r, ["validation"], [{"check": "validation", "field": f, "detail": m} for f, m in issues],
                r.meta.get("translation", {}).get("source_record_id", "")))
        else:
            kept.append(r)
    owned = {(r.dataset, r.language, r.split) for r in passed} | {
        (q.get("dataset"), q.get("language"), q.get("split")) for q in quarantine}
    write_outputs(out, kept, [q for q in new_quarantine if (q.get("dataset"), q.get("language"), q.get("split")) in owned],
                  owned)
    with TranslationCache.in_dir(out) as cache:
        cache.put_fields((r.id, f, r.dataset, r.language, r.split, details.get((r.id, f), {}).get("source_text", ""),
                          text, details.get((r.id, f), {}).get("back_translation"),
                          details.get((r.id, f), {}).get("chrf"), 1)
                         for r in kept for f, text in record_fields(r) if r.id in reviews)
    log.info("apply review %s: %s", path, result.summary())
    return result
