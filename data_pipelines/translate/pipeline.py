"""Translate normalized records into new languages, with protected spans, caching and QC.

:func:`translate_records` is the whole pipeline for in-memory source records;
:func:`run` reads them from a normalized JSONL directory first. Per target language and
record it:

1. protects numbers / units / lab values / glossary terms of every translatable field
   (:mod:`.placeholders`);
2. translates every field not yet in the cache (unique texts, length-sorted batches of
   ``batch_size``; the cache is committed after each batch, so a stopped run resumes);
3. back-translates the (masked) translations with the same translator for chrF;
4. restores the placeholders, builds the translated :class:`Record` and runs the QC checks
   (:mod:`.qc`) and ``data_pipelines.validate``; failing records go to ``quarantine.jsonl``
   with their reasons (never dropped);
5. writes ``OUT/<dataset>/<language>/<split>.jsonl``, ``quarantine.jsonl`` and the QC report
   (``qc_report.md``, ``qc_chrf_hist.png``, ``qc_summary.json``).

Output files of the (dataset, language, split) keys a run produces are rewritten from the
cache every run; other keys' files and quarantine lines are kept, and the report covers every
language in ``qc_summary.json`` (the latest run of each).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import pathlib
import sys
from typing import Any, Iterable, Mapping, Sequence

from globmed_jax.data.records_io import load_records
from data_pipelines.translate.cache import BACK, FORWARD, Key, TranslationCache
from data_pipelines.translate.placeholders import Glossary, Protected, Protector, restore, strip_spans
from data_pipelines.translate.qc import (
    FieldResult, LanguageIdentifier, LanguageStats, QCConfig, RecordQC, check_record, chrf, chrf_histogram,
    markdown_report)
from data_pipelines.translate.records import (
    OPTION_PREFIX, OutKey, quarantine_entry, record_fields, target_id, with_fields, write_outputs)
from data_pipelines.translate.review import apply_reviews, fully_reviewed, recheck
from data_pipelines.translate.translators import Translator
from data_pipelines.validate import Validator
from globmed_jax.data.languages import get_language
from globmed_jax.data.schema import Record

log = logging.getLogger(__name__)

REPORT_NAME, HISTOGRAM_NAME, SUMMARY_NAME = "qc_report.md", "qc_chrf_hist.png", "qc_summary.json"


@dataclasses.dataclass(frozen=True)
class TranslateOptions:
    languages: tuple[str, ...]
    source_language: str = "en"
    batch_size: int = 16
    limit: int = 0  # records per (dataset, split); 0 = all
    datasets: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()
    qc: QCConfig = QCConfig()
    progress: bool | None = None  # None: a tqdm bar when stderr is a terminal


@dataclasses.dataclass
class RunResult:
    output_dir: pathlib.Path
    stats: dict[str, LanguageStats]
    sources: int
    passed: int
    quarantined: int
    translated: int  # texts sent to the translator by this run (forward + back)
    cached: int  # field translations / back-translations found in the cache
    report: str
    files: dict[OutKey, pathlib.Path]

    def summary(self) -> str:
        return (f"{self.sources} source record(s) x {len(self.stats)} language(s): {self.passed} passed, "
                f"{self.quarantined} quarantined; {self.translated} text(s) translated, {self.cached} from cache")


# ------------------------------------------------------------------------------ sources


def select_sources(records: Iterable[Record], options: TranslateOptions) -> list[Record]:
    """The source-language records to translate (dataset / split filters, ``limit`` per
    (dataset, split) in input order)."""
    seen: collections.Counter = collections.Counter()
    out = []
    for r in records:
        if r.language != options.source_language:
            continue
        if options.datasets and r.dataset not in options.datasets:
            continue
        if options.splits and r.split not in options.splits:
            continue
        if options.limit and seen[(r.dataset, r.split)] >= options.limit:
            continue
        seen[(r.dataset, r.split)] += 1
        out.append(r)
    return out


def run(input_dir: str | pathlib.Path, output_dir: str | pathlib.Path, translator: Translator,
        options: TranslateOptions, glossary: Glossary | None = None) -> RunResult:
    """Translates the source-language records below ``input_dir`` into ``output_dir``."""
    sources = select_sources(load_records(input_dir), options)
    if not sources:
        raise ValueError(f"no {options.source_language!r} records to translate in {input_dir} "
                         f"(datasets={options.datasets or 'all'}, splits={options.splits or 'all'})")
    return translate_records(sources, output_dir, translator, options, glossary)


# ------------------------------------------------------------------------- translation


@dataclasses.dataclass
class _Unit:
    """One field of one source record, for one target language."""

    record: Record
    language: str
    field: str
    protected: Protected

    def key(self, translator: str, direction: str) -> Key:
        return Key(self.record.dataset, self.record.source_id, self.field, self.language, translator, direction)


def _show_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


def _translate_pending(requests: Sequence[tuple[Key, str, str, str]], translator: Translator, cache: TranslationCache,
                       source_language: str, batch_size: int, progress: bool | None, desc: str) -> dict[Key, str]:
    """Translates ``(key, text, from, to)`` requests (unique texts per language pair, longest
    first, ``batch_size`` at a time, the cache committed after each batch)."""
    from tqdm.auto import tqdm

    keys: dict[tuple[str, str, str], list[Key]] = collections.defaultdict(list)  # (text, from, to) -> keys
    for key, text, src, tgt in requests:
        keys[(text, src, tgt)].append(key)
    mixed = getattr(translator, "translate_mixed", None)
    if mixed is not None:  # one length-sorted stream across language pairs
        groups = [sorted(keys, key=lambda it: (-len(it[0]), it))]
    else:  # per language pair
        by_pair = collections.defaultdict(list)
        for item in keys:
            by_pair[item[1:]].append(item)
        groups = [sorted(items, key=lambda it: (-len(it[0]), it)) for _, items in sorted(by_pair.items())]
    results: dict[Key, str] = {}
    bar = tqdm(total=len(keys), desc=desc, unit="text", disable=not _show_progress(progress) or not keys)
    try:
        for items in groups:
            for i in range(0, len(items), batch_size):
                chunk = items[i:i + batch_size]
                if mixed is not None:
                    outs = list(mixed(chunk))
                else:
                    outs = list(translator.translate([t for t, _, _ in chunk], chunk[0][1], chunk[0][2]))
                if len(outs) != len(chunk):
                    raise RuntimeError(f"translator {translator.name} returned {len(outs)} texts for {len(chunk)}")
                rows = [(k, item[0], str(o)) for item, o in zip(chunk, outs) for k in keys[item]]
                cache.put_many(rows, source_language)
                results.update({k: o for k, _, o in rows})
                bar.update(len(chunk))
    finally:
        bar.close()
    return results


def translate_records(sources: Sequence[Record], output_dir: str | pathlib.Path, translator: Translator,
                      options: TranslateOptions, glossary: Glossary | None = None,
                      langid: LanguageIdentifier | None = None) -> RunResult:
    """The pipeline (module docstring) for in-memory source records."""
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    src_lang = get_language(options.source_language).code
    languages = [get_language(code).code for code in options.languages]
    if src_lang in languages:
        raise ValueError(f"target languages include the source language {src_lang!r}")
    wrong = sorted({r.language for r in sources} - {src_lang})
    if wrong:
        raise ValueError(f"source records must all be in {src_lang!r}; found {wrong}")
    if options.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {options.batch_size}")
    glossary = glossary or Glossary()
    qc_cfg = options.qc
    langid = langid or LanguageIdentifier(qc_cfg.langid_accuracy, qc_cfg.langid_min_chars)
    name = translator.name

    protectors = {lang: Protector(glossary.terms(lang)) for lang in languages}
    units = [_Unit(r, lang, field, protectors[lang].protect(text))
             for lang in languages for r in sources for field, text in record_fields(r)]

    with TranslationCache.in_dir(out) as cache:
        # 1. forward translations
        forward: dict[Key, str] = {}
        pending = []
        cached = 0
        for u in units:
            k = u.key(name, FORWARD)
            if not u.protected.needs_translation:
                forward[k] = u.protected.masked
                continue
            hit = cache.get(k, u.protected.masked, src_lang)
            if hit is None:
                pending.append((k, u.protected.masked, src_lang, u.language))
            else:
                forward[k] = hit
                cached += 1
        forward.update(_translate_pending(pending, translator, cache, src_lang, options.batch_size,
                                          options.progress, f"translate ({name})"))
        translated = len({(t, s, d) for _, t, s, d in pending})

        # 2. back-translations (same translator) for chrF
        back: dict[Key, str] = {}
        if qc_cfg.back_translate:
            pending = []
            for u in units:
                if not u.protected.needs_translation:
                    continue
                k, text = u.key(name, BACK), forward[u.key(name, FORWARD)]
                if not text.strip():
                    back[k] = ""
                    continue
                hit = cache.get(k, text, src_lang)
                if hit is None:
                    pending.append((k, text, u.language, src_lang))
                else:
                    back[k] = hit
                    cached += 1
            back.update(_translate_pending(pending, translator, cache, src_lang, options.batch_size,
                                           options.progress, f"back-translate ({name})"))
            translated += len({(t, s, d) for _, t, s, d in pending})

        # 3. assemble, QC, validate
        reviews = cache.reviews()
        by_record: dict[tuple[str, str], list[_Unit]] = collections.defaultdict(list)
        for u in units:
            by_record[(u.record.id, u.language)].append(u)
        stats = {lang: LanguageStats() for lang in languages}
        passed: list[Record] = []
        quarantined: list[dict[str, Any]] = []
        field_rows = []
        validator = Validator()
        for lang in languages:
            for src in sources:
                rec, qc, fields = _assemble(src, lang, by_record[(src.id, lang)], forward, back, name, qc_cfg, langid)
                field_rows += [(rec.id, f.field, rec.dataset, rec.language, rec.split, f.source, f.translation,
                                f.back_translation, f.chrf, int(f.translated)) for f in fields]
                issues = [i.to_json() for i in qc.issues]
                rec_reviews = reviews.get(rec.id, {})
                if rec_reviews:
                    rec = apply_reviews(rec, rec_reviews)
                    if issues and fully_reviewed(rec, rec_reviews) and \
                            not recheck(rec, {f.field: f.source for f in fields}, list(src.options)):
                        meta = dict(rec.meta)
                        meta["review"] = {**meta["review"], "promoted_from_quarantine": qc.reasons}
                        rec, issues = dataclasses.replace(rec, meta=meta), []
                if not issues:
                    issues = [{"check": "validation", "field": f, "detail": m}
                              for f, m in validator.check(rec, f"translation of {src.id}")]
                reasons = sorted({i["check"] for i in issues})
                stats[lang].add(qc, not issues, reasons)
                if issues:
                    quarantined.append(quarantine_entry(rec, reasons, issues, src.id))
                else:
                    passed.append(rec)
        cache.put_fields(field_rows)

    owned = {(r.dataset, lang, r.split) for r in sources for lang in languages}
    files = write_outputs(out, passed, quarantined, owned)
    report = write_report(out, stats, translator=name, source_language=src_lang, config=qc_cfg)
    result = RunResult(out, stats, len(sources), len(passed), len(quarantined), translated, cached, report, files)
    log.info("%s", result.summary())
    return result


def _assemble(src: Record, lang: str, units: Sequence[_Unit], forward: Mapping[Key, str], back: Mapping[Key, str],
              name: str, qc_cfg: QCConfig, langid: LanguageIdentifier) -> tuple[Record, RecordQC, list[FieldResult]]:
    fields: list[FieldResult] = []
    spans = []
    for u in units:
        p = u.protected
        spans += p.spans
        restored = restore(forward[u.key(name, FORWARD)], p.spans, side="target")
        f = FieldResult(u.field, p.original, restored.text, restored.issues, translated=p.needs_translation)
        bk = u.key(name, BACK)
        if p.needs_translation and bk in back:
            f.back_translation = restore(back[bk], p.spans, side="source").text
            f.chrf = chrf(f.back_translation, p.original)
        fields.append(f)
    texts = {f.field: f.translation for f in fields}
    options = {k[len(OPTION_PREFIX):]: v for k, v in texts.items() if k.startswith(OPTION_PREFIX)}
    qc = check_record(fields, source_options=src.options, options=options, language=lang, config=qc_cfg,
                      langid=langid, protected_strip=lambda t: strip_spans(t, spans))
    meta = dict(src.meta)
    meta["translation"] = {
        "translator": name, "source_language": src.language, "source_record_id": src.id, "qc": qc.to_json(),
        "field_chrf": {f.field: round(f.chrf, 2) for f in fields if f.chrf is not None},
    }
    rec = with_fields(src, texts, id=target_id(src, lang), language=lang, meta=meta)
    return rec, qc, fields


# ------------------------------------------------------------------------------- report


def _load_summary(path: pathlib.Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        log.warning("%s unreadable; the report will cover this run's languages only", path)
        return {}


def write_report(output_dir: pathlib.Path, stats: Mapping[str, LanguageStats], *, translator: str,
                 source_language: str, config: QCConfig) -> str:
    """Merges this run's per-language stats into ``qc_summary.json`` and writes the Markdown
    table and the chrF histogram for every language in it; returns the Markdown."""
    path = output_dir / SUMMARY_NAME
    summary = _load_summary(path)
    langs = dict(summary.get("languages", {}))
    for lang, s in stats.items():
        langs[lang] = {**s.to_json(), "chrf": [round(x, 3) for x in s.chrf], "translator": translator,
                       "source_language": source_language}
    summary = {"languages": dict(sorted(langs.items())), "thresholds": dataclasses.asdict(config)}
    path.write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    all_stats = {lang: _stats_from_json(d) for lang, d in langs.items()}
    md = markdown_report(all_stats, translator=translator, source_language=source_language, config=config)
    (output_dir / REPORT_NAME).write_text(md, encoding="utf-8")
    chrf_histogram(all_stats, output_dir / HISTOGRAM_NAME, min_chrf=config.min_chrf)
    return md


def _stats_from_json(d: Mapping[str, Any]) -> LanguageStats:
    return LanguageStats(records=d["records"], passed=d["passed"], quarantined=d["quarantined"],
                         reasons=collections.Counter(d.get("quarantined_by_reason", {})),
                         chrf=list(d.get("chrf", [])), langid=collections.Counter(d.get("language_id", {})))
