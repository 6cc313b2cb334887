"""Answer extraction on realistic model replies in the 12 default languages, failures included."""

from __future__ import annotations

import pytest

from globmed_jax.data.languages import DEFAULT_LANGUAGES
from globmed_jax.data.schema import Record
from globmed_jax.evaluation import extract
from globmed_jax.evaluation.extract import parse_answer, parse_nli, parse_option, parse_yes_no_maybe

OPTIONS = {"A": "benzathine benzylpenicillin", "B": "levothyroxine", "C": "epinephrine",
           "D": "artemether-lumefantrine"}

# (language, reply, expected letter or None)
MCQA = [
    ("en", "B", "B"), ("en", "(B)", "B"), ("en", "B.", "B"), ("en", "**B**", "B"), ("en", "Answer: B", "B"),
    ("en", "The correct answer is (C).", "C"), ("en", "C. epinephrine", "C"), ("en", "C) Epinephrine", "C"),
    ("en", "Epinephrine", "C"), ("en", "The first-line drug is epinephrine.", "C"),
    ("en", "A patient in anaphylaxis needs option D", "D"), ("en", "answer: d", "D"),
    ("en", "<think>A or C? A is for syphilis.</think>\nC", "C"),
    ("en", "Final answer: [D]", "D"),
    ("en", "I think the answer is a drug", None), ("en", "A, B or C", None), ("en", "", None),
    ("en", "I cannot answer medical questions.", None),
    ("zh", "答案：B", "B"), ("zh", "答案是C", "C"), ("zh", "正确答案为 D。", "D"), ("zh", "Ｂ", "B"),
    ("zh", "选C", "C"), ("zh", "肾上腺素", None),
    ("es", "La respuesta es B", "B"), ("es", "La respuesta correcta es la C.", "C"), ("es", "Opción D", "D"),
    ("fr", "La réponse est B", "B"), ("fr", "Réponse : C", "C"), ("fr", "Je ne sais pas.", None),
    ("ar", "الإجابة: ب", "B"), ("ar", "الإجابة الصحيحة هي (ج)", "C"), ("ar", "د", "D"), ("ar", "أ", "A"),
    ("ar", "الجواب هو C", "C"),
    ("hi", "उत्तर: B", "B"), ("hi", "सही उत्तर (ग) है", "C"), ("hi", "उत्तर है C।", "C"), ("hi", "मुझे नहीं पता", None),
    ("ja", "正解はBです", "B"), ("ja", "答え：Ｃ", "C"), ("ja", "Dです。", "D"),
    ("ko", "정답은 B입니다", "B"), ("ko", "답: C", "C"), ("ko", "모르겠습니다", None),
    ("sw", "Jibu ni B", "B"), ("sw", "Jibu sahihi ni C.", "C"),
    ("yo", "Ìdáhùn ni B", "B"), ("yo", "Ìdáhùn tó tọ̀nà ni D", "D"),
    ("zu", "Impendulo ngu-B", "B"), ("zu", "Impendulo efanele ngu-C", "C"),
    ("am", "መልሱ B ነው", "B"), ("am", "መልስ: (መ)", "D"), ("am", "አላውቅም", None),
]


@pytest.mark.parametrize("language,reply,expected", MCQA)
def test_option_letters(language, reply, expected):
    assert parse_option(reply, OPTIONS, language) == expected


def test_option_letter_outside_the_options_is_rejected():
    three = {k: OPTIONS[k] for k in "ABC"}
    assert parse_option("D", three) is None
    assert parse_option("Answer: D", three) is None
    assert parse_option("Answer: D", OPTIONS) == "D"


def test_longer_option_text_wins_over_contained_one():
    opts = {"A": "malaria", "B": "cerebral malaria", "C": "typhoid", "D": "cholera"}
    assert parse_option("This is cerebral malaria.", opts) == "B"
    assert parse_option("malaria", opts) == "A"


# (language, reply, expected yes/no/maybe or None). One row per localized word of the brief.
YNM = [
    ("en", "Yes", "yes"), ("en", "No.", "no"), ("en", "Maybe", "maybe"), ("en", "**Yes**, it is.", "yes"),
    ("en", "The answer is no, although more data may help.", "no"), ("en", "Answer: maybe", "maybe"),
    ("en", "I am not sure what you mean", None), ("en", "", None),
    ("es", "Sí", "yes"), ("es", "No, no lo es.", "no"), ("es", "Quizás", "maybe"), ("es", "Tal vez.", "maybe"),
    ("fr", "Oui", "yes"), ("fr", "Non.", "no"), ("fr", "Peut-être", "maybe"),
    ("zh", "是", "yes"), ("zh", "否", "no"), ("zh", "可能", "maybe"), ("zh", "答案是否。", "no"),
    ("zh", "答案：是", "yes"), ("zh", "不是。", "no"),
    ("ar", "نعم", "yes"), ("ar", "لا", "no"), ("ar", "ربما", "maybe"), ("ar", "الإجابة: نعم", "yes"),
    ("hi", "हाँ", "yes"), ("hi", "नहीं", "no"), ("hi", "शायद", "maybe"), ("hi", "उत्तर: हाँ", "yes"),
    ("ja", "はい", "yes"), ("ja", "いいえ", "no"), ("ja", "たぶん", "maybe"), ("ja", "正解はいいえです。", "no"),
    ("ko", "예", "yes"), ("ko", "아니오", "no"), ("ko", "아마도", "maybe"), ("ko", "아니요.", "no"),
    ("sw", "Ndiyo", "yes"), ("sw", "Hapana", "no"), ("sw", "Labda", "maybe"), ("sw", "Jibu ni ndiyo.", "yes"),
    ("yo", "Bẹ́ẹ̀ni", "yes"), ("yo", "Rárá", "no"), ("yo", "Bóyá", "maybe"), ("yo", "beeni", "yes"),
    ("zu", "Yebo", "yes"), ("zu", "Cha", "no"), ("zu", "Mhlawumbe", "maybe"),
    ("am", "አዎ", "yes"), ("am", "አይ", "no"), ("am", "ምናልባት", "maybe"), ("am", "አይደለም", "no"),
    ("am", "እርግጠኛ አይደለሁም።", None),  # "I am not sure": no yes/no/maybe word
    # A reply in another language than the item's still counts when unambiguous.
    ("sw", "Yes", "yes"), ("en", "Oui.", "yes"),
]


@pytest.mark.parametrize("language,reply,expected", YNM)
def test_yes_no_maybe(language, reply, expected):
    assert parse_yes_no_maybe(reply, language) == expected


NLI = [
    ("en", "entailment", "entailment"), ("en", "Neutral.", "neutral"), ("en", "Contradiction", "contradiction"),
    ("en", "The hypothesis contradicts the premise.", "contradiction"),
    ("en", "Answer: entailment", "entailment"), ("en", "The premise entails the hypothesis.", "entailment"),
    ("en", "It is undetermined.", "neutral"), ("en", "I don't know", None),
    ("zh", "蕴含", "entailment"), ("zh", "矛盾", "contradiction"), ("zh", "中立", "neutral"),
    ("es", "Contradicción", "contradiction"), ("es", "neutral", "neutral"),
    ("fr", "Neutre", "neutral"), ("fr", "contradiction", "contradiction"),
    ("ar", "تناقض", "contradiction"), ("ar", "محايد", "neutral"),
    ("hi", "तटस्थ", "neutral"), ("hi", "विरोधाभास", "contradiction"),
    ("ja", "含意", "entailment"), ("ja", "矛盾", "contradiction"),
    ("ko", "함의", "entailment"), ("ko", "중립", "neutral"), ("ko", "모순", "contradiction"),
    ("sw", "entailment", "entailment"), ("yo", "contradiction", "contradiction"),
    ("zu", "neutral", "neutral"), ("am", "ተቃርኖ", "contradiction"), ("am", "ገለልተኛ", "neutral"),
]


@pytest.mark.parametrize("language,reply,expected", NLI)
def test_nli_labels(language, reply, expected):
    assert parse_nli(reply, language) == expected


def test_every_default_language_has_word_tables():
    for lang in DEFAULT_LANGUAGES:
        assert set(extract.YES_NO_MAYBE_WORDS[lang]) == {"yes", "no", "maybe"}, lang
        assert set(extract.NLI_WORDS[lang]) == {"entailment", "neutral", "contradiction"}, lang
        assert extract.ANSWER_KEYWORDS[lang], lang


def test_word_boundaries_are_script_aware():
    assert extract.find_word("答案是B", "B") == [(3, 4)]
    assert extract.find_word("Bob", "B") == []
    assert extract.find_word("ngu-B", "B") == [(4, 5)]
    assert extract.find_word("बकरी", "ब") == []  # a Devanagari letter inside a word is not an answer
    assert extract.find_word("notable", "no") == []


def test_parse_answer_dispatches_on_task():
    mk = lambda task, **kw: Record(id="x", source_id="s", dataset="d", language="fr", split="test",
                                   family=task, question="q", answer=kw.pop("answer", "yes"), **kw)
    assert parse_answer("La réponse est C", mk("mcqa", answer="C", options=OPTIONS)) == "C"
    assert parse_answer("Oui", mk("yes_no_maybe")) == "yes"
    assert parse_answer("neutre", mk("nli", answer="neutral")) == "neutral"
    assert parse_answer("  <think>x</think> L'adrénaline. ", mk("open_qa", answer="adrénaline")) == "L'adrénaline."
    assert parse_answer("   ", mk("open_qa", answer="x")) is None
