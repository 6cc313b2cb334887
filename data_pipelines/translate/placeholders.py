"""Protected spans: numbers, units, lab values and glossary terms become ``⟦i⟧`` placeholders.

:func:`protect` replaces every protected span of a source text by a numbered placeholder
(``⟦0⟧``, ``⟦1⟧``, ... in order of appearance) before the text goes to a translator;
:func:`restore` puts the spans back afterwards and reports every placeholder that did not come
back exactly once. A glossary term restores to its *target* term (forcing consistent
terminology); a number / unit / lab value restores to itself.

What is protected (see :data:`UNITS`, :data:`NUMBER_RE`):

* numbers, ranges and ratios (``45``, ``7.5``, ``3-5``, ``120/80``), with a following symbolic
  unit when there is one (``2.9 mmol/L``, ``500 mg``, ``38.5 °C``, ``12%``). Word units such as
  "years" or "days" are NOT part of the span: the translator must be free to inflect and
  reorder them;
* alphanumeric lab / gene / test names that contain a digit (``HbA1c``, ``SpO2``, ``COVID-19``,
  ``CD4+``);
* glossary terms of the target language (longest first, case-insensitive, whole words) --
  put drug names under the ``*`` column of the glossary to keep them verbatim everywhere.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import pathlib
import re
import unicodedata
from typing import Iterable, Mapping, Sequence

OPEN, CLOSE = "\u27e6", "\u27e7"  # ⟦ ⟧
ANY_LANGUAGE = "*"

# A placeholder as translators may return it: tolerate spaces inside the brackets.
PLACEHOLDER_RE = re.compile(OPEN + r"\s*(\d+)\s*" + CLOSE)

# Symbolic units that stay glued to their number (longest first inside the alternation).
UNITS: tuple[str, ...] = (
    "×10^9/L", "x10^9/L", "×10⁹/L", "x10⁹/L", "×10^12/L", "x10^12/L", "mOsm/kg", "mmol/L", "µmol/L",
    "μmol/L", "umol/L", "nmol/L", "pmol/L", "mEq/L", "mg/dL", "g/dL", "mg/L", "g/L", "ng/mL",
    "pg/mL", "µg/mL", "μg/mL", "mcg/mL", "IU/mL", "IU/L", "mIU/L", "mU/L", "U/L", "mg/kg/day",
    "mg/kg", "µg/kg", "μg/kg", "mcg/kg", "mg/m2", "mg/m²", "mL/kg", "mL/min", "mL/h", "L/min",
    "cmH2O", "cm H2O", "mmHg", "mm Hg", "kPa", "bpm", "/min", "/mm3", "/mm³", "/µL", "/μL",
    "breaths/min", "beats/min", "kcal", "kJ", "mSv", "Gy", "Hz", "mcg", "µg", "μg", "ng", "mg",
    "kg", "g", "mL", "ml", "dL", "L", "IU", "mEq", "mmol", "mol", "cm", "mm", "km", "m",
    "°C", "°F", "%", "‰",
)
_NUM = r"\d+(?:[.,]\d+)*"
_UNIT_ALT = "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))
NUMBER_RE = re.compile(
    rf"(?<![\w.,]){_NUM}(?:\s?[-–]\s?{_NUM}|/{_NUM})?(?:\s?(?:{_UNIT_ALT})(?![^\W\d_]))?")
# Tokens that start with a letter and hold a digit: HbA1c, SpO2, COVID-19, CD4+, T4, H2O
# (not "45-year-old" or "1st": there only the number is protected).
ALNUM_RE = re.compile(r"(?<![\w+\-])(?=[^\W\d_])(?=[\w\-]*\d)[^\W_]+(?:-[^\W_]+)*\+?(?![\w])")
# Every number in a text (for the "numbers unchanged" check), any script's decimal digits.
DIGITS_RE = re.compile(r"\d+(?:[.,]\d+)*")
_ORDINAL_RE = re.compile(r"^\d+(?:st|nd|rd|th)$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Span:
    """One protected span: ``source`` text and what it restores to in the translation."""

    kind: str  # "number" | "term" | "glossary"
    source: str
    target: str


@dataclasses.dataclass(frozen=True)
class Protected:
    """A source text with its protected spans replaced by ``⟦i⟧`` (``spans[i]``)."""

    original: str
    masked: str
    spans: tuple[Span, ...]

    @property
    def needs_translation(self) -> bool:
        """False when nothing but placeholders, digits, spaces and punctuation is left."""
        rest = PLACEHOLDER_RE.sub("", self.masked)
        return any(ch.isalpha() for ch in rest)


@dataclasses.dataclass(frozen=True)
class Restored:
    text: str
    issues: tuple[str, ...]  # empty when every placeholder came back exactly once


def placeholder(i: int) -> str:
    return f"{OPEN}{i}{CLOSE}"


# ------------------------------------------------------------------------------- glossary


class GlossaryError(ValueError):
    """A glossary file that cannot be read (names the file and the problem)."""


@dataclasses.dataclass(frozen=True)
class Glossary:
    """``{language: {source term: target term}}``; the ``*`` language applies to every target
    (its entries are used unless the target language has its own entry for the term)."""

    entries: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)

    def terms(self, language: str) -> dict[str, str]:
        out = dict(self.entries.get(ANY_LANGUAGE, {}))
        out.update(self.entries.get(language, {}))
        return {k: v for k, v in out.items() if k.strip() and v.strip()}

    def __bool__(self) -> bool:
        return any(self.entries.values())

    @classmethod
    def load(cls, path: str | pathlib.Path) -> "Glossary":
        """JSON ``{"sw": {"anaphylaxis": "anafilaksia"}, "*": {"epinephrine": "epinephrine"}}``
        or TSV with a header ``source<TAB>sw<TAB>zu...`` (one term per row, an empty cell = no
        entry for that language, a ``*`` column = the same target in every language)."""
        path = pathlib.Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise GlossaryError(f"glossary {path}: {e}") from None
        if path.suffix.lower() == ".json":
            return cls(_glossary_json(text, path))
        if path.suffix.lower() in (".tsv", ".tab", ".txt"):
            return cls(_glossary_tsv(text, path))
        raise GlossaryError(f"glossary {path}: expected a .json or .tsv file")


def _glossary_json(text: str, path: pathlib.Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise GlossaryError(f"glossary {path}: invalid JSON: {e}") from None
    if not isinstance(data, dict):
        raise GlossaryError(f"glossary {path}: top level must be an object {{language: {{term: target}}}}")
    out: dict[str, dict[str, str]] = {}
    for lang, terms in data.items():
        if not isinstance(terms, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in terms.items()):
            raise GlossaryError(f"glossary {path}: language {lang!r} must map source terms to target strings")
        out[_check_lang(lang, path)] = dict(terms)
    return out


def _glossary_tsv(text: str, path: pathlib.Path) -> dict[str, dict[str, str]]:
    rows = [r for r in csv.reader(text.splitlines(), delimiter="\t") if r and any(c.strip() for c in r)]
    if not rows:
        return {}
    header = [h.strip() for h in rows[0]]
    if header[0].lower() not in ("source", "term", "en", "source_term"):
        raise GlossaryError(f"glossary {path}: the first header cell must be 'source' (got {header[0]!r})")
    langs = [_check_lang(h, path) for h in header[1:]]
    out: dict[str, dict[str, str]] = {lang: {} for lang in langs}
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) > len(header):
            raise GlossaryError(f"glossary {path}: line {lineno} has {len(row)} cells, header has {len(header)}")
        term = row[0].strip()
        for lang, cell in zip(langs, row[1:]):
            if cell.strip() and term:
                out[lang][term] = cell.strip()
    return out


def _check_lang(code: str, path: pathlib.Path) -> str:
    from globmed_jax.data.languages import get_language

    code = code.strip()
    if code == ANY_LANGUAGE:
        return code
    try:
        return get_language(code).code
    except KeyError:
        raise GlossaryError(f"glossary {path}: unknown language {code!r}") from None


# ------------------------------------------------------------------------ protect / restore


def _glossary_re(terms: Iterable[str]) -> re.Pattern | None:
    terms = sorted({t for t in terms if t.strip()}, key=len, reverse=True)
    if not terms:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(t) for t in terms) + r")(?!\w)", re.IGNORECASE)


class Protector:
    """Protects texts for one target language (the glossary regex is compiled once)."""

    def __init__(self, glossary_terms: Mapping[str, str] | None = None, *, numbers: bool = True,
                 alnum_terms: bool = True):
        self.terms = {k.lower(): v for k, v in (glossary_terms or {}).items()}
        self._glossary = _glossary_re(self.terms)
        self.numbers, self.alnum_terms = numbers, alnum_terms

    def _matches(self, text: str) -> list[tuple[int, int, Span]]:
        found: list[tuple[int, int, Span]] = []
        if self._glossary is not None:
            for m in self._glossary.finditer(text):
                found.append((m.start(), m.end(), Span("glossary", m.group(0), self.terms[m.group(0).lower()])))
        if self.alnum_terms:
            for m in ALNUM_RE.finditer(text):
                if not _ORDINAL_RE.match(m.group(0)):
                    found.append((m.start(), m.end(), Span("term", m.group(0), m.group(0))))
        if self.numbers:
            for m in NUMBER_RE.finditer(text):
                found.append((m.start(), m.end(), Span("number", m.group(0), m.group(0))))
        # Earliest first; at the same start the longest wins; overlaps are dropped.
        found.sort(key=lambda t: (t[0], -(t[1] - t[0])))
        kept, end = [], -1
        for s, e, span in found:
            if s >= end:
                kept.append((s, e, span))
                end = e
        return kept

    def protect(self, text: str) -> Protected:
        parts, spans, pos = [], [], 0
        for s, e, span in self._matches(text):
            parts += [text[pos:s], placeholder(len(spans))]
            spans.append(span)
            pos = e
        parts.append(text[pos:])
        return Protected(text, "".join(parts), tuple(spans))


def protect(text: str, glossary_terms: Mapping[str, str] | None = None) -> Protected:
    return Protector(glossary_terms).protect(text)


def restore(text: str, spans: Sequence[Span], *, side: str = "target") -> Restored:
    """Replaces each ``⟦i⟧`` of ``text`` by ``spans[i].target`` (``side="source"``: ``.source``,
    for back-translations). Issues name every placeholder missing, repeated or unknown; a
    repeated one is restored each time, an unknown one is left as it is."""
    counts = collections.Counter(int(m.group(1)) for m in PLACEHOLDER_RE.finditer(text))
    issues = []
    for i in range(len(spans)):
        if counts[i] == 0:
            issues.append(f"placeholder {placeholder(i)} ({spans[i].source!r}) missing")
        elif counts[i] > 1:
            issues.append(f"placeholder {placeholder(i)} ({spans[i].source!r}) appears {counts[i]} times")
    for i in sorted(set(counts) - set(range(len(spans)))):
        issues.append(f"unknown placeholder {placeholder(i)}")

    def sub(m: re.Match) -> str:
        i = int(m.group(1))
        if i >= len(spans):
            return m.group(0)
        return spans[i].target if side == "target" else spans[i].source

    restored = PLACEHOLDER_RE.sub(sub, text)
    if OPEN in restored or CLOSE in restored:
        if not any(i.startswith("unknown") for i in issues):
            issues.append("stray placeholder bracket left in the translation")
    return Restored(restored, tuple(issues))


def numbers_in(text: str) -> collections.Counter:
    """The multiset of numbers in ``text`` (digits of any script normalized to ASCII, the
    decimal separator to ``.``)."""
    norm = "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in text)
    return collections.Counter(m.group(0).replace(",", ".") for m in DIGITS_RE.finditer(norm))


def strip_spans(text: str, spans: Sequence[Span]) -> str:
    """``text`` without the (restored) protected spans: what language ID should look at."""
    for s in sorted({s.target for s in spans} | {s.source for s in spans}, key=len, reverse=True):
        if s:
            text = text.replace(s, " ")
    return text
