"""Translation quality control: per-field and per-record checks, per-language report.

Checks (the name is what quarantine reasons and the report use):

``placeholders``  every ``⟦i⟧`` came back exactly once (none missing, repeated or invented)
``numbers``       the multiset of numbers of each field is unchanged after restoring
``options``       mcqa option letters, count and order unchanged; no option empty; options that
                  differ in the source still differ in the translation
``empty``         a field that had text came back empty
``length_ratio``  ``len(translation) / len(source)`` (characters, fields of at least
                  ``min_chars_for_ratio``) inside ``[min_length_ratio, max_length_ratio]``;
                  CJK targets use ``cjk_min_length_ratio`` as the lower bound
``untranslated``  every translatable field came back identical to its source
``language_id``   the record's translated prose -- question, context, explanation, open answer;
                  the options too only when the prose is too short, since options are often
                  names -- with protected spans removed, is identified as the
                  target language (offline detector, :class:`LanguageIdentifier`). A target the
                  detector does not know is ``undetectable`` -- reported, never failed; text
                  shorter than ``langid_min_chars`` letters is ``too_short``
``low_chrf``      chrF (sacrebleu) of the back-translation against the source, over the
                  record's fields, below ``min_chrf``
``validation``    the output record fails ``data_pipelines.validate``
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import pathlib
import statistics
from typing import Any, Iterable, Mapping, Sequence

from data_pipelines.translate.placeholders import CLOSE, OPEN, numbers_in
from globmed_jax.data.langid import CONFUSABLE, LanguageIdentifier  # noqa: F401 (re-exported)
from globmed_jax.data.languages import get_language

log = logging.getLogger(__name__)

CHECKS = ("placeholders", "numbers", "options", "empty", "length_ratio", "untranslated", "language_id",
          "low_chrf", "validation")
CJK_SCRIPTS = ("Hans", "Hant", "Jpan", "Kore")


@dataclasses.dataclass(frozen=True)
class QCConfig:
    min_chrf: float = 30.0
    min_length_ratio: float = 0.3
    max_length_ratio: float = 3.0
    cjk_min_length_ratio: float = 0.1
    min_chars_for_ratio: int = 20
    langid_min_chars: int = 20
    langid_accuracy: str = "low"  # "low" (fast, ~160 MB) | "high" (~1 GB)
    back_translate: bool = True
    checks: tuple[str, ...] = CHECKS  # the checks that can quarantine a record

    def ratio_bounds(self, language: str) -> tuple[float, float]:
        lo = self.cjk_min_length_ratio if get_language(language).script in CJK_SCRIPTS else self.min_length_ratio
        return lo, self.max_length_ratio


@dataclasses.dataclass(frozen=True)
class Issue:
    check: str
    field: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------ chrF


def chrf(hypothesis: str, reference: str) -> float:
    """Sentence chrF (sacrebleu defaults: char 6-grams, beta 2), 0..100."""
    return float(_chrf_metric().sentence_score(hypothesis, [reference]).score)


@functools.lru_cache(maxsize=1)
def _chrf_metric():
    from sacrebleu.metrics import CHRF

    return CHRF()


# ---------------------------------------------------------------------- language identification

# The detector lives in globmed_jax.data.langid (the bench measures answer language with it too);
# re-exported here, where translation QC has always imported it from.


# ------------------------------------------------------------------------- record checks


@dataclasses.dataclass
class FieldResult:
    """One translated field: texts, restoration issues, back-translation and its chrF."""

    field: str
    source: str
    translation: str
    placeholder_issues: tuple[str, ...] = ()
    back_translation: str | None = None
    chrf: float | None = None
    translated: bool = True  # False: nothing to translate (only numbers / protected terms)


@dataclasses.dataclass
class RecordQC:
    issues: list[Issue]
    chrf: float | None
    language_id: str
    detected_language: str | None
    length_ratios: dict[str, float]

    @property
    def passed(self) -> bool:
        return not self.issues

    @property
    def reasons(self) -> list[str]:
        return sorted({i.check for i in self.issues})

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": self.reasons, "issues": [i.to_json() for i in self.issues],
                "chrf": None if self.chrf is None else round(self.chrf, 2), "language_id": self.language_id,
                "detected_language": self.detected_language,
                "length_ratios": {k: round(v, 3) for k, v in self.length_ratios.items()}}


def structural_issues(fields: Sequence[FieldResult], source_options: Mapping[str, str],
                      options: Mapping[str, str]) -> list[Issue]:
    """The checks that need only source and translated texts (used again after human review)."""
    issues: list[Issue] = []
    for f in fields:
        if f.source.strip() and not f.translation.strip() and not f.field.startswith("option:"):  # options: below
            issues.append(Issue("empty", f.field, "empty translation"))
        if OPEN in f.translation or CLOSE in f.translation:
            issues.append(Issue("placeholders", f.field, "placeholder bracket left in the text"))
        src_n, out_n = numbers_in(f.source), numbers_in(f.translation)
        if src_n != out_n:
            missing = sorted((src_n - out_n).elements())
            extra = sorted((out_n - src_n).elements())
            detail = "; ".join(p for p in (f"missing {missing}" if missing else "", f"added {extra}" if extra else "") if p)
            issues.append(Issue("numbers", f.field, detail))
    if list(options) != list(source_options):
        issues.append(Issue("options", "options", f"option letters {''.join(options) or '-'} != source "
                                                  f"{''.join(source_options)}"))
    else:
        empty = [k for k, v in options.items() if not v.strip()]
        if empty:
            issues.append(Issue("options", "options", f"option(s) {', '.join(empty)} empty (missing)"))
        src_distinct = len(set(v.strip().lower() for v in source_options.values()))
        out_distinct = len(set(v.strip().lower() for v in options.values()))
        if not empty and out_distinct < src_distinct:
            issues.append(Issue("options", "options", f"{src_distinct} distinct source options became {out_distinct}"))
    return issues


def check_record(fields: Sequence[FieldResult], *, source_options: Mapping[str, str], options: Mapping[str, str],
                 language: str, config: QCConfig, langid: LanguageIdentifier,
                 protected_strip: Any = None) -> RecordQC:
    """Runs every check on one translated record (``fields`` in record order)."""
    issues: list[Issue] = []
    for f in fields:
        for msg in f.placeholder_issues:
            issues.append(Issue("placeholders", f.field, msg))
    issues += [i for i in structural_issues(fields, source_options, options)
               if not (i.check == "placeholders" and any(j.field == i.field and j.check == "placeholders" for j in issues))]
    lo, hi = config.ratio_bounds(language)
    ratios = {}
    for f in fields:
        if len(f.source) >= config.min_chars_for_ratio and f.translated:
            ratio = len(f.translation) / max(1, len(f.source))
            ratios[f.field] = ratio
            if not lo <= ratio <= hi and f.translation.strip():
                issues.append(Issue("length_ratio", f.field, f"length ratio {ratio:.2f} outside [{lo}, {hi}]"))
    translatable = [f for f in fields if f.translated]
    if translatable and all(f.translation.strip() == f.source.strip() for f in translatable) and \
            sum(ch.isalpha() for f in translatable for ch in f.source) >= config.langid_min_chars:
        issues.append(Issue("untranslated", "*", "every field is identical to its source"))
    prose = [f for f in translatable if not f.field.startswith("option:")]
    text = "\n".join(f.translation for f in prose)
    if protected_strip is not None:
        text = protected_strip(text)
    if sum(ch.isalpha() for ch in text) < config.langid_min_chars:  # options are often names: last resort
        text = "\n".join(f.translation for f in translatable)
        text = protected_strip(text) if protected_strip is not None else text
    lid, detected = langid.status(text, language)
    if lid == "fail":
        issues.append(Issue("language_id", "*", f"identified as {detected or 'unknown'}, expected {language}"))
    scored = [f for f in translatable if f.back_translation is not None]
    record_chrf = None
    if scored:
        record_chrf = chrf("\n".join(f.back_translation for f in scored), "\n".join(f.source for f in scored))
        if record_chrf < config.min_chrf:
            issues.append(Issue("low_chrf", "*", f"back-translation chrF {record_chrf:.1f} < {config.min_chrf}"))
    issues = [i for i in issues if i.check in config.checks]
    return RecordQC(issues, record_chrf, lid, detected, ratios)


# ------------------------------------------------------------------------------ report


@dataclasses.dataclass
class LanguageStats:
    records: int = 0
    passed: int = 0
    quarantined: int = 0
    reasons: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    chrf: list[float] = dataclasses.field(default_factory=list)
    langid: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def add(self, qc: RecordQC | None, passed: bool, reasons: Iterable[str]) -> None:
        self.records += 1
        if passed:
            self.passed += 1
        else:
            self.quarantined += 1
            self.reasons.update(set(reasons))
        if qc is not None:
            if qc.chrf is not None:
                self.chrf.append(qc.chrf)
            self.langid[qc.language_id] += 1

    def langid_rate(self) -> str:
        judged = self.langid["pass"] + self.langid["fail"]
        if judged == 0:
            return "undetectable" if self.langid["undetectable"] else "n/a"
        return f"{100 * self.langid['pass'] / judged:.0f}% ({self.langid['pass']}/{judged})"

    def to_json(self) -> dict[str, Any]:
        return {"records": self.records, "passed": self.passed, "quarantined": self.quarantined,
                "quarantined_by_reason": dict(sorted(self.reasons.items())),
                "chrf_mean": round(statistics.fmean(self.chrf), 2) if self.chrf else None,
                "chrf_median": round(statistics.median(self.chrf), 2) if self.chrf else None,
                "language_id": dict(self.langid), "language_id_pass_rate": self.langid_rate()}


def markdown_report(stats: Mapping[str, LanguageStats], *, translator: str, source_language: str,
                    config: QCConfig) -> str:
    """The per-language QC table (Markdown)."""
    reasons = [c for c in CHECKS if any(s.reasons[c] for s in stats.values())]
    head = ["language", "records", "passed", "quarantined", *[f"q:{r}" for r in reasons],
            "chrF mean", "chrF median", "lang-ID pass"]
    lines = ["# Translation QC report", "",
             f"translator `{translator}`, source language `{source_language}`; thresholds: chrF >= "
             f"{config.min_chrf}, length ratio in [{config.min_length_ratio}, {config.max_length_ratio}] "
             f"(CJK >= {config.cjk_min_length_ratio}), lang-ID on >= {config.langid_min_chars} letters "
             f"({config.langid_accuracy}-accuracy detector).", "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"]
    for lang in sorted(stats):
        s = stats[lang]
        mean = f"{statistics.fmean(s.chrf):.1f}" if s.chrf else "-"
        med = f"{statistics.median(s.chrf):.1f}" if s.chrf else "-"
        row = [lang, s.records, s.passed, s.quarantined, *[s.reasons[r] for r in reasons], mean, med, s.langid_rate()]
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    lines += ["", "A record quarantined for several reasons counts once in `quarantined` and once in "
                  "each `q:<reason>` column. Language-ID pass rate is over records the detector could "
                  "judge (`undetectable`: the detector does not know the language)."]
    return "\n".join(lines) + "\n"


def chrf_histogram(stats: Mapping[str, LanguageStats], path: str | pathlib.Path, *, min_chrf: float) -> pathlib.Path | None:
    """One PNG: a chrF histogram per language (matplotlib Agg); None when no chrF was computed."""
    langs = [lang for lang in sorted(stats) if stats[lang].chrf]
    if not langs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(langs), 1, figsize=(6, 2.2 * len(langs)), squeeze=False, sharex=True)
    for ax, lang in zip(axes[:, 0], langs):
        ax.hist(stats[lang].chrf, bins=20, range=(0, 100), color="tab:blue", edgecolor="white")
        ax.axvline(min_chrf, color="tab:red", linestyle="--", label=f"threshold {min_chrf:g}")
        ax.set_ylabel(f"{lang}\nrecords")
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("back-translation chrF")
    fig.suptitle("Back-translation chrF per record")
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
