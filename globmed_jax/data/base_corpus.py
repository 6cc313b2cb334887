"""The base pretraining corpus of the demo: SYNTHETIC plain text that gives a tiny model the
kind of medical knowledge open LLMs have, mostly in high-resource languages.

THIS CORPUS IS SYNTHETIC. It is generated from GlobMed-mini's table of 52 textbook facts
(``mini.FACTS``) and term translations, nothing else:

* **fact sentences**: every fact stated as a plain declarative sentence, e.g. "The first-line
  drug for anaphylaxis is epinephrine.", in several phrasings per language:
  - the corpus's own statement frames (``STATEMENT_FRAMES``, written for this module; two per
    high-resource language, none for the low-resource ones), and
  - GlobMed-mini's *training* hypothesis frames (``mini.TEMPLATES[lang].nli_hypothesis`` at
    ``mini.template_ids(n, "train")``) filled with the condition itself.
  High-resource languages (en zh es fr ar hi ja ko) get every fact in every phrasing;
  low-resource languages (sw yo zu am) get only ``low_resource_fact_fraction`` of the facts
  (default 10 %, a seeded subset) in ``low_resource_phrasings`` phrasing (default 1) each;
* **neutral filler**: arithmetic sentences ("17 plus 5 equals 22.") in the high-resource
  languages (``FILLER_FRAMES``), ``filler_per_language`` each, so the corpus is not only facts.

No document is a question, a clinical note, an NLI premise or anything in a chat template, and
no test-only phrasing of GlobMed-mini is used: ``test_only_fragments`` lists the literal text of
every held-out template and ``find_test_phrasings`` finds any of it (or any test item's question /
context) in a set of texts; ``tests/test_demo_effect.py`` asserts it finds nothing in this corpus
and in GlobMed-mini's training split.

``documents(config)`` returns ``list[Document]``; ``tasks.base_corpus`` mixes them (one task per
(kind, language), proportional to their sizes) for ``data.objective="lm"`` (plain next-token
loss on every token, ``pipeline.PipelineConfig.objective``).
"""

from __future__ import annotations

import dataclasses
import functools
import random
import re
from typing import Iterable, Sequence

from globmed_jax.data import mini
from globmed_jax.data.languages import DEFAULT_LANGUAGES, get_language
from globmed_jax.data.schema import Record

KINDS = ("facts", "filler")
DATASET = "base_corpus"

# {rel}: a relation phrase filled with the condition ("the first-line drug for anaphylaxis"),
# {x}: the answer term. Corpus-only frames (not GlobMed-mini templates).
STATEMENT_FRAMES: dict[str, tuple[str, ...]] = {
    "en": ("{rel} is {x}.", "According to standard textbooks, {rel} is {x}."),
    "zh": ("{rel}是{x}。", "根据标准教科书，{rel}是{x}。"),
    "es": ("{rel} es {x}.", "Según los libros de texto, {rel} es {x}."),
    "fr": ("{rel} est {x}.", "Selon les manuels de référence, {rel} est {x}."),
    "ar": ("{rel} هو {x}.", "وفقًا للمراجع الطبية، {rel} هو {x}."),
    "hi": ("{rel} {x} है।", "मानक पाठ्यपुस्तकों के अनुसार, {rel} {x} है।"),
    "ja": ("{rel}は{x}である。", "標準的な教科書によれば、{rel}は{x}である。"),
    "ko": ("{rel}은(는) {x}이다.", "표준 교과서에 따르면 {rel}은(는) {x}이다."),
}

# Neutral (non-medical) filler: {a}, {b}, {c} are numbers.
FILLER_FRAMES: dict[str, tuple[str, ...]] = {
    "en": ("{a} plus {b} equals {c}.", "The number {c} is larger than {a}."),
    "zh": ("{a}加{b}等于{c}。", "数字{c}大于{a}。"),
    "es": ("{a} más {b} es igual a {c}.", "El número {c} es mayor que {a}."),
    "fr": ("{a} plus {b} égale {c}.", "Le nombre {c} est plus grand que {a}."),
    "ar": ("{a} زائد {b} يساوي {c}.", "العدد {c} أكبر من {a}."),
    "hi": ("{a} जमा {b} बराबर {c} है।", "संख्या {c}, {a} से बड़ी है।"),
    "ja": ("{a}足す{b}は{c}です。", "{c}は{a}より大きい数です。"),
    "ko": ("{a} 더하기 {b}는 {c}이다.", "숫자 {c}은(는) {a}보다 크다."),
}


@dataclasses.dataclass(frozen=True)
class Document:
    """One plain-text training document (the LM pipeline reads ``text`` and ``language``)."""

    id: str
    language: str
    kind: str  # "facts" or "filler"
    text: str


@dataclasses.dataclass(frozen=True)
class BaseCorpusConfig:
    seed: int = 0
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    low_resource: tuple[str, ...] | None = None  # None: the language registry's low-resource ones
    low_resource_fact_fraction: float = 0.1
    low_resource_phrasings: int = 1
    filler_per_language: int = 200

    def low_resource_languages(self) -> tuple[str, ...]:
        if self.low_resource is not None:
            return tuple(self.low_resource)
        return tuple(c for c in self.languages if get_language(c).low_resource)


def _statement_frames(language: str) -> tuple[str, ...]:
    """Every statement phrasing of ``language``: the corpus's own frames, then GlobMed-mini's
    training-split hypothesis frames."""
    hyp = mini.TEMPLATES[language].nli_hypothesis
    train = tuple(hyp[i] for i in mini.template_ids(len(hyp), "train"))
    return STATEMENT_FRAMES.get(language, ()) + train


def fact_sentence(fact: mini.Fact, language: str, frame: str) -> str:
    """``frame`` filled with the fact in ``language`` (GlobMed-mini's slot filling and grammar
    fix-ups)."""
    condition = mini.CONDITIONS[fact.condition][language]
    rel = mini._fill(mini.TEMPLATES[language].relation[fact.relation], c=condition)
    term = mini.TERMS[fact.relation][fact.answer][language]
    return mini._finish(mini._fill(frame, rel=rel, x=term), language)


def low_resource_facts(config: BaseCorpusConfig) -> tuple[mini.Fact, ...]:
    """The facts stated in the low-resource languages (the same seeded subset in each)."""
    n = round(config.low_resource_fact_fraction * len(mini.FACTS))
    return tuple(random.Random(f"{config.seed}|base_corpus|low").sample(list(mini.FACTS), n))


@functools.lru_cache(maxsize=8)
def _documents(config: BaseCorpusConfig) -> tuple[Document, ...]:
    low = set(config.low_resource_languages())
    low_facts = low_resource_facts(config)
    docs = []
    for lang in config.languages:
        frames = _statement_frames(lang)
        if lang in low:
            facts, frames = low_facts, frames[: config.low_resource_phrasings]
        else:
            facts = mini.FACTS
        for fact in facts:
            for j, frame in enumerate(frames):
                docs.append(Document(f"{DATASET}/facts/{fact.id}/{j}@{lang}", lang, "facts",
                                     fact_sentence(fact, lang, frame)))
        if lang in FILLER_FRAMES and lang not in low:
            rng = random.Random(f"{config.seed}|base_corpus|filler|{lang}")
            for k in range(config.filler_per_language):
                a, b = rng.randint(1, 99), rng.randint(1, 99)
                frame = FILLER_FRAMES[lang][k % len(FILLER_FRAMES[lang])]
                docs.append(Document(f"{DATASET}/filler/{k}@{lang}", lang, "filler",
                                     frame.format(a=a, b=b, c=a + b)))
    return tuple(docs)


def documents(config: BaseCorpusConfig = BaseCorpusConfig()) -> list[Document]:
    """Every document of the corpus, by language then kind (deterministic for a config)."""
    return list(_documents(config))


@dataclasses.dataclass(frozen=True)
class CorpusSource:
    """A task source: the documents of one (kind, language); only a "train" split exists."""

    kind: str
    language: str
    config: BaseCorpusConfig = BaseCorpusConfig()

    def __call__(self, split: str) -> list[Document]:
        if split != "train":
            raise ValueError(f"the base corpus has only a train split, not {split!r}")
        return [d for d in _documents(self.config) if d.kind == self.kind and d.language == self.language]


# ------------------------------------------------------------------------------ leakage check


_SLOT = re.compile(r"\{[a-z]+\}")


def _fragments(template: str, min_chars: int) -> set[str]:
    return {p.strip() for p in _SLOT.split(template) if len(p.strip()) >= min_chars}


def test_only_fragments(languages: Iterable[str] = DEFAULT_LANGUAGES, min_chars: int = 4) -> dict[str, set[str]]:
    """Per language, the literal text (at least ``min_chars`` characters, slots removed) of every
    GlobMed-mini template held out for the test split that does not also occur in a template
    usable for training (those are shared phrasing by design)."""
    out = {}
    for lang in languages:
        lt = mini.TEMPLATES[lang]
        test, train = set(), set()
        for field in dataclasses.fields(lt):
            values = getattr(lt, field.name)
            if not isinstance(values, tuple):
                continue
            for i in mini.template_ids(len(values), "test"):
                test |= _fragments(values[i], min_chars)
            for i in mini.template_ids(len(values), "train"):
                train |= _fragments(values[i], min_chars)
        out[lang] = {f for f in test if not any(f in t for t in train)}
    return out


def find_test_phrasings(texts: Sequence[tuple[str, str]], test_records: Sequence[Record],
                        train_records: Sequence[Record] = ()) -> list[str]:
    """Violations (human-readable) where a ``(language, text)`` contains a test-only template
    fragment of its language, or any language's text contains a test record's question, or a
    test record's context that no training record has (two-entry context lists are shared by
    both splits on purpose, see ``mini``). Empty: no test phrasing in ``texts``."""
    fragments = test_only_fragments(sorted({lang for lang, _ in texts} & set(mini.TEMPLATES)))
    violations = []
    for lang, text in texts:
        for frag in fragments.get(lang, ()):
            if frag in text:
                violations.append(f"[{lang}] test-only template text {frag!r} in {text!r}")
    joined = "\n".join(text for _, text in texts)
    train_contexts = {r.context for r in train_records if r.context}
    for r in test_records:
        if r.question and r.question in joined:
            violations.append(f"test question of {r.id} ({r.question!r}) found")
        if r.context and r.context not in train_contexts and r.context in joined:
            violations.append(f"test context of {r.id} ({r.context!r}) found")
    return violations


def record_texts(records: Iterable[Record]) -> list[tuple[str, str]]:
    """``(language, text)`` of every text field of ``records`` (for ``find_test_phrasings``)."""
    out = []
    for r in records:
        for text in (r.question, r.context, r.explanation, r.answer, *r.options.values()):
            if text:
                out.append((r.language, text))
    return out
