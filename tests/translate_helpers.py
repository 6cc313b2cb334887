"""Helpers for tests/test_translate.py: a toy English source set with numbers and units, its
hand-written Swahili and French translations (in placeholder form), and a scripted translator.

The scripted translator looks the (masked) text up in a table: forward entries map the masked
English text to the masked translation, back entries the other way round, so a correct
translation back-translates exactly (chrF 100). ``plants`` override single forward outputs to
plant failures; unknown texts come back unchanged.
"""

from __future__ import annotations

import re
import threading
from typing import Mapping, Sequence

from data_pipelines.translate.placeholders import Protector
from data_pipelines.translate.records import record_fields
from globmed_jax.data.languages import get_language
from globmed_jax.data.schema import Record

P = "\u27e6{}\u27e7"


def ph(text: str) -> str:
    """``{0}`` -> ``⟦0⟧`` (so the tables below stay readable)."""
    return re.sub(r"\{(\d+)\}", lambda m: P.format(m.group(1)), text)


def _rec(n: int, dataset: str, task: str, question: str, answer: str, **kw) -> Record:
    sid = f"{dataset}:{n}"
    return Record(id=f"{sid}@en", source_id=sid, dataset=dataset, language="en", split="test", family=task,
                  question=question, answer=answer, **kw)


SOURCES: tuple[Record, ...] = (
    _rec(1, "toy_mcqa", "mcqa",
         "A 45-year-old man has a serum potassium of 2.9 mmol/L and muscle weakness. Which drug should be given first?",
         "A", options={"A": "potassium chloride", "B": "insulin", "C": "furosemide", "D": "digoxin"},
         explanation="Potassium chloride corrects a potassium level below 3.5 mmol/L."),
    _rec(2, "toy_ynm", "yes_no_maybe", "Should a lumbar puncture be considered?", "yes",
         context="A 6-year-old child has a fever of 39.5 °C and a stiff neck.",
         explanation="Fever with a stiff neck suggests meningitis, so a lumbar puncture is indicated."),
    _rec(3, "toy_open", "open_qa", "What is the usual adult dose of paracetamol for fever?",
         "Usually 500 mg to 1 g every 4 to 6 hours, with no more than 4 g per day."),
    _rec(4, "toy_nli", "nli", "The patient is anaemic.", "entailment",
         context="The patient's haemoglobin is 7 g/dL."),
)

# (masked English, {language: masked translation}) per field, in record_fields order.
TRANSLATIONS: dict[str, dict[str, tuple[str, dict[str, str]]]] = {
    "toy_mcqa:1": {
        "question": ("A {0}-year-old man has a serum potassium of {1} and muscle weakness. Which drug should be given first?", {
            "sw": "Mwanamume mwenye umri wa miaka {0} ana potasiamu ya damu ya {1} na udhaifu wa misuli. Ni dawa gani inapaswa kutolewa kwanza?",
            "fr": "Un homme de {0} ans a une kaliémie de {1} et une faiblesse musculaire. Quel médicament faut-il donner en premier ?"}),
        "option:A": ("potassium chloride", {"sw": "kloridi ya potasiamu", "fr": "le chlorure de potassium"}),
        "option:B": ("insulin", {"sw": "insulini", "fr": "l'insuline"}),
        "option:C": ("furosemide", {"sw": "furosemidi", "fr": "le furosémide"}),
        "option:D": ("digoxin", {"sw": "digoksini", "fr": "la digoxine"}),
        "explanation": ("Potassium chloride corrects a potassium level below {0}.", {
            "sw": "Kloridi ya potasiamu hurekebisha kiwango cha potasiamu kilicho chini ya {0}.",
            "fr": "Le chlorure de potassium corrige une kaliémie inférieure à {0}."}),
    },
    "toy_ynm:2": {
        "question": ("Should a lumbar puncture be considered?", {
            "sw": "Je, kuchomwa kwa uti wa mgongo kunapaswa kuzingatiwa?",
            "fr": "Faut-il envisager une ponction lombaire ?"}),
        "context": ("A {0}-year-old child has a fever of {1} and a stiff neck.", {
            "sw": "Mtoto wa miaka {0} ana homa ya {1} na shingo ngumu.",
            "fr": "Un enfant de {0} ans a une fièvre à {1} et une raideur de la nuque."}),
        "explanation": ("Fever with a stiff neck suggests meningitis, so a lumbar puncture is indicated.", {
            "sw": "Homa pamoja na shingo ngumu huashiria homa ya uti wa mgongo, kwa hivyo kuchomwa kwa uti wa mgongo kunahitajika.",
            "fr": "Une fièvre avec une raideur de la nuque évoque une méningite, une ponction lombaire est donc indiquée."}),
    },
    "toy_open:3": {
        "question": ("What is the usual adult dose of paracetamol for fever?", {
            "sw": "Je, dozi ya kawaida ya paracetamol kwa mtu mzima mwenye homa ni ipi?",
            "fr": "Quelle est la dose habituelle de paracétamol chez l'adulte en cas de fièvre ?"}),
        "answer": ("Usually {0} to {1} every {2} to {3} hours, with no more than {4} per day.", {
            "sw": "Kwa kawaida {0} hadi {1} kila saa {2} hadi {3}, bila kuzidi {4} kwa siku.",
            "fr": "En général {0} à {1} toutes les {2} à {3} heures, sans dépasser {4} par jour."}),
    },
    "toy_nli:4": {
        "question": ("The patient is anaemic.", {"sw": "Mgonjwa ana upungufu wa damu.", "fr": "Le patient est anémique."}),
        "context": ("The patient's haemoglobin is {0}.", {
            "sw": "Himoglobini ya mgonjwa ni {0}.", "fr": "L'hémoglobine du patient est de {0}."}),
    },
}


def check_tables() -> None:
    """The hand-written masked English texts must be what the pipeline sends."""
    prot = Protector()
    for r in SOURCES:
        fields = dict(record_fields(r))
        table = TRANSLATIONS[r.source_id]
        assert list(fields) == list(table), (r.source_id, list(fields), list(table))
        for field, text in fields.items():
            assert prot.protect(text).masked == ph(table[field][0]), (r.source_id, field, prot.protect(text).masked)


def translation_table(languages: Sequence[str] = ("sw", "fr"), source: str = "en") -> dict[tuple[str, str, str], str]:
    """``{(from, to, masked text): masked translation}`` both ways."""
    out = {}
    for fields in TRANSLATIONS.values():
        for en, targets in fields.values():
            for lang in languages:
                out[(source, lang, ph(en))] = ph(targets[lang])
                out[(lang, source, ph(targets[lang]))] = ph(en)
    return out


def masked_source(source_id: str, field: str) -> str:
    return ph(TRANSLATIONS[source_id][field][0])


def masked_target(source_id: str, field: str, language: str) -> str:
    return ph(TRANSLATIONS[source_id][field][1][language])


class ScriptedTranslator:
    """Deterministic fake: table lookup, plants override forward outputs, else identity.

    ``calls`` counts texts translated; ``fail_after`` raises after that many ``translate`` calls
    (a stopped run)."""

    def __init__(self, table: Mapping[tuple[str, str, str], str] | None = None, *,
                 plants: Mapping[tuple[str, str], str] | None = None, name: str = "fake:scripted",
                 fail_after: int | None = None):
        self.table = dict(translation_table() if table is None else table)
        self.plants = dict(plants or {})  # (target language, masked source) -> output
        self.name = name
        self.calls = 0
        self.batches = 0
        self.fail_after = fail_after
        self._lock = threading.Lock()

    def lookup(self, text: str, source: str, target: str) -> str:
        if (target, text) in self.plants and source == "en":
            return self.plants[(target, text)]
        return self.table.get((source, target, text), text)

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        with self._lock:
            if self.fail_after is not None and self.batches >= self.fail_after:
                raise KeyboardInterrupt("scripted stop")
            self.batches += 1
            self.calls += len(texts)
        return [self.lookup(t, source, target) for t in texts]


def parse_translation_request(content: str) -> tuple[str, str, str]:
    """(from code, to code, text) out of the user message built by ``translation_messages``."""
    m = re.match(r"Translate this medical text from (.+?) to (.+?)\.", content)
    assert m, content
    text = content.split("\n\n", 1)[1]
    return get_language(m.group(1)).code, get_language(m.group(2)).code, text
