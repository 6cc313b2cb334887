"""Parse a free-form model answer into the closed label set of its task family.

``parse_answer(text, record)`` returns an option letter (mcqa), ``yes``/``no``/``maybe``, an NLI
label, the cleaned text (open_qa), or ``None`` when no answer can be read (a parse failure,
scored as wrong and reported as a rate).

Text is normalized first: ``<think>`` blocks dropped, NFKC (full-width ``Ｂ`` -> ``B``, ``：`` ->
``:``), markdown emphasis removed, Latin diacritics folded (``sí`` -> ``si``, ``bẹ́ẹ̀ni`` ->
``beeni``) and lowercased where words are compared. Words match on script-aware boundaries: a
match may not continue into a neighbouring character of the same script, so ``B`` is found in
``答案是B`` and ``ngu-B`` but not in ``Bob``, and Han/kana words match as substrings.

Decision order, per family (the first rule that yields an answer wins):

1. the whole answer is one label (``B``, ``(B)``, ``**B**``, ``ب``, ``Yes.``, ``はい``);
2. mcqa: the answer starts with a letter and a delimiter (``B. epinephrine``, ``(B) ...``);
3. an answer keyword (``answer``, ``答案``, ``respuesta``, ``الإجابة``, ``उत्तर``, ``正解``, ``정답``,
   ``jibu``, ``ìdáhùn``, ``impendulo``, ``መልስ`` ...) followed closely by a label; the last such
   keyword wins (a final answer after reasoning);
4. words of the item's language and English: overlapping matches keep the longer one (``いいえ``
   over ``はい`` in ``正解はいいえ``), then the earliest wins; mcqa: exactly one option text
   mentioned, or exactly one standalone option letter;
5. words of every other language, only when they agree on one label.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Callable, Iterable, Mapping, Sequence

from globmed_jax.data import families
from globmed_jax.data.families import get_family
from globmed_jax.data.schema import NLI_LABELS, OPTION_LETTERS, YES_NO_MAYBE, Record

# --------------------------------------------------------------------------- normalization

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_MARKDOWN = re.compile(r"\*\*|__|`|\\boxed|\\text")


def _fold_latin(text: str) -> str:
    """Drops combining marks on Latin letters only (Devanagari/Arabic/Hebrew marks are letters'
    vowels there, and NFD would also split Hangul syllables; NFC puts them back)."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFD", text):
        if unicodedata.category(ch) == "Mn" and out and _is_latin(out[-1]):
            continue
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


def _is_latin(ch: str) -> bool:
    o = ord(ch)
    return ch.isascii() and ch.isalnum() or 0xC0 <= o <= 0x24F or 0x1E00 <= o <= 0x1EFF


def clean_text(text: str | None) -> str:
    """Think blocks removed, NFC, stripped: the open-QA answer as scored (accents kept)."""
    if not text:
        return ""
    text = _THINK.sub(" ", text)
    # An unclosed think block (generation cut off): keep its text, there may be nothing else.
    text = text.replace("<think>", " ").replace("</think>", " ")
    return unicodedata.normalize("NFC", text).strip()


def normalize(text: str | None) -> str:
    """``clean_text``, then NFKC, markdown emphasis removed, Latin diacritics folded: the form
    closed answers are parsed from."""
    text = clean_text(text)
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", text).replace("\u0640", "")  # Arabic tatweel
    text = _MARKDOWN.sub("", text)
    return _fold_latin(text).strip()


# ---------------------------------------------------------------------- script boundaries


def _script(ch: str) -> str:
    """Coarse script class for word boundaries; "cjk" has none (no spaces between words)."""
    o = ord(ch)
    if _is_latin(ch):
        return "latin"
    if 0x0600 <= o <= 0x06FF or 0x0750 <= o <= 0x077F or 0xFB50 <= o <= 0xFEFF:
        return "arabic"
    if 0x0900 <= o <= 0x097F:
        return "deva"
    if 0x1200 <= o <= 0x139F or 0x2D80 <= o <= 0x2DDF:
        return "ethi"
    if 0xAC00 <= o <= 0xD7AF or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F:
        return "hangul"
    if 0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF:
        return "cjk"
    if unicodedata.category(ch).startswith("M"):
        return "mark"
    return "other"


def _joins(ch: str, script: str) -> bool:
    """Would ``ch`` next to a word of ``script`` continue that word?"""
    s = _script(ch)
    return s == "mark" or (s == script and s not in ("cjk", "other"))


def find_word(text: str, word: str) -> list[tuple[int, int]]:
    """All (start, end) of ``word`` in ``text`` on script-aware word boundaries."""
    out = []
    if not word:
        return out
    first, last = _script(word[0]), _script(word[-1])
    i = text.find(word)
    while i >= 0:
        j = i + len(word)
        if not (i > 0 and _joins(text[i - 1], first)) and not (j < len(text) and _joins(text[j], last)):
            out.append((i, j))
        i = text.find(word, i + 1)
    return out


def _matches(text: str, words: Mapping[str, str]) -> list[tuple[int, int, str]]:
    """(start, end, label) of every word, overlaps resolved in favour of the longer match."""
    found = [(s, e, label) for w, label in words.items() for s, e in find_word(text, w)]
    found.sort(key=lambda m: (-(m[1] - m[0]), m[0]))
    kept: list[tuple[int, int, str]] = []
    for m in found:
        if all(m[1] <= k[0] or m[0] >= k[1] for k in kept):
            kept.append(m)
    return sorted(kept)


def _strip_punct(text: str) -> str:
    return "".join(ch for ch in text if not unicodedata.category(ch)[0] in "PZS").strip()


# ------------------------------------------------------------------------------ word tables

# Answer keywords that introduce the answer (lowercase, Latin diacritics folded).
ANSWER_KEYWORDS: Mapping[str, tuple[str, ...]] = {
    "en": ("answer", "correct option", "correct choice", "option", "choice"),
    "zh": ("答案", "正确答案", "答", "选项", "选择", "选"),
    "es": ("respuesta", "opcion", "alternativa"),
    "fr": ("reponse", "option", "choix"),
    "ar": ("الإجابة", "الاجابة", "الجواب", "الخيار", "إجابة", "اجابة"),
    "hi": ("उत्तर", "जवाब", "विकल्प"),
    "ja": ("答え", "正解", "解答", "回答", "選択肢"),
    "ko": ("정답은", "정답", "답은", "답", "선택지", "답변"),
    "sw": ("jibu", "chaguo"),
    "yo": ("idahun", "asayan"),
    "zu": ("impendulo", "inketho"),
    "am": ("መልሱ", "መልስ", "አማራጭ"),
}

# Per language: label -> words meaning it (lowercase, Latin diacritics folded). Checked with
# dictionaries where we could; Yoruba/Zulu/Amharic entries are the common forms.
YES_NO_MAYBE_WORDS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "en": {"yes": ("yes", "yeah"), "no": ("no",),
           "maybe": ("maybe", "perhaps", "possibly", "uncertain", "unclear")},
    "zh": {"yes": ("是", "是的", "对", "正确", "肯定"), "no": ("否", "不是", "不对", "不可能"),
           "maybe": ("可能", "也许", "或许", "不确定", "不一定")},
    "es": {"yes": ("si",), "no": ("no",), "maybe": ("quizas", "quiza", "tal vez", "posiblemente", "a lo mejor")},
    "fr": {"yes": ("oui",), "no": ("non",), "maybe": ("peut-etre", "peut etre", "possiblement")},
    "ar": {"yes": ("نعم", "أجل", "بلى"), "no": ("لا", "كلا"), "maybe": ("ربما", "ربّما", "قد يكون", "ممكن", "يمكن")},
    "hi": {"yes": ("हाँ", "हां", "जी हाँ", "जी हां"), "no": ("नहीं", "नही", "जी नहीं"),
           "maybe": ("शायद", "संभवतः", "संभवत")},
    "ja": {"yes": ("はい",), "no": ("いいえ",),
           "maybe": ("たぶん", "多分", "おそらく", "恐らく", "かもしれない", "かもしれません")},
    "ko": {"yes": ("예", "네", "예입니다", "네입니다", "그렇다", "그렇습니다"),
           "no": ("아니오", "아니요", "아니", "아닙니다", "아니다"),
           "maybe": ("아마도", "아마", "어쩌면", "아마도요")},
    "sw": {"yes": ("ndiyo", "ndio", "naam"), "no": ("hapana",), "maybe": ("labda", "huenda", "pengine")},
    "yo": {"yes": ("beeni", "bee ni"), "no": ("rara", "rara o"), "maybe": ("boya", "o le je")},
    "zu": {"yes": ("yebo",), "no": ("cha", "qha", "hhayi"), "maybe": ("mhlawumbe", "kungenzeka")},
    "am": {"yes": ("አዎ", "አዎን"), "no": ("አይ", "አይደለም", "የለም"), "maybe": ("ምናልባት", "ምናልባትም")},
}

NLI_WORDS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "en": {"entailment": ("entailment", "entails", "entailed", "entail", "implication", "implied"),
           "neutral": ("neutral", "undetermined", "indeterminate", "unrelated", "cannot be determined"),
           "contradiction": ("contradiction", "contradicts", "contradictory", "contradicted", "contradict")},
    "zh": {"entailment": ("蕴含", "蕴涵", "推出"), "neutral": ("中立", "中性", "无关"),
           "contradiction": ("矛盾", "冲突")},
    "es": {"entailment": ("implicacion", "vinculacion", "consecuencia"), "neutral": ("neutral", "neutro", "neutra"),
           "contradiction": ("contradiccion", "contradice")},
    "fr": {"entailment": ("implication", "consequence", "inference"), "neutral": ("neutre",),
           "contradiction": ("contradiction", "contredit")},
    "ar": {"entailment": ("استلزام", "استنتاج", "تضمين"), "neutral": ("محايد", "حياد"),
           "contradiction": ("تناقض", "متناقض")},
    "hi": {"entailment": ("अनुगमन", "निहितार्थ", "निष्कर्ष"), "neutral": ("तटस्थ",),
           "contradiction": ("विरोधाभास", "विरोध")},
    "ja": {"entailment": ("含意",), "neutral": ("中立",), "contradiction": ("矛盾",)},
    "ko": {"entailment": ("함의",), "neutral": ("중립",), "contradiction": ("모순",)},
    "sw": {"entailment": ("inafuata", "hitimisho"), "neutral": ("haijulikani", "kati"),
           "contradiction": ("mkanganyiko", "kinzani", "inapingana")},
    "yo": {"entailment": ("o tele",), "neutral": ("aidasi",), "contradiction": ("itakora", "o tako")},
    "zu": {"entailment": ("kuyalandela", "kulandela"), "neutral": ("maphakathi",),
           "contradiction": ("ukuphikisana", "kuyaphikisana")},
    "am": {"entailment": ("ይከተላል",), "neutral": ("ገለልተኛ",), "contradiction": ("ተቃርኖ", "ይቃረናል")},
}

# Option letters in other notations: index i means OPTION_LETTERS[i].
SCRIPT_LETTERS: Mapping[str, tuple[tuple[str, ...], ...]] = {
    # Arabic abjad order (أ ب ج د هـ و ز ح ط ي), with the unhamzated alif/heh spellings.
    "ar": (("أ", "ا", "إ", "آ"), ("ب",), ("ج",), ("د",), ("هـ", "ه"), ("و",), ("ز",), ("ح",), ("ط",), ("ي",)),
    # Hindi exam order (क ख ग घ ...).
    "hi": (("क",), ("ख",), ("ग",), ("घ",), ("ङ",), ("च",), ("छ",), ("ज",), ("झ",), ("ञ",)),
    # Amharic exam order (ሀ ለ ሐ መ ...).
    "am": (("ሀ",), ("ለ",), ("ሐ",), ("መ",), ("ሠ",), ("ረ",), ("ሰ",), ("ሸ",), ("ቀ",), ("በ",)),
}


def _label_words(table: Mapping[str, Mapping[str, tuple[str, ...]]], languages: Iterable[str],
                 labels: Sequence[str]) -> dict[str, str]:
    words = {label: label for label in labels}
    for lang in languages:
        for label, ws in table.get(lang, {}).items():
            for w in ws:
                words.setdefault(w, label)
    return words


def _keyword_spans(low: str, language: str) -> list[tuple[int, int]]:
    spans = []
    for lang in dict.fromkeys((language, *ANSWER_KEYWORDS)):
        for kw in ANSWER_KEYWORDS.get(lang, ()):
            spans += find_word(low, kw) if _script(kw[-1]) != "hangul" else _prefix_spans(low, kw)
    return sorted(spans)


def _prefix_spans(text: str, word: str) -> list[tuple[int, int]]:
    """Hangul keywords take particles (정답은, 정답이): only the left boundary is checked."""
    out, i = [], text.find(word)
    while i >= 0:
        if not (i > 0 and _joins(text[i - 1], "hangul")):
            out.append((i, i + len(word)))
        i = text.find(word, i + 1)
    return out


_ANCHOR_GAP = 24  # characters allowed between a keyword and its answer ("la respuesta correcta es la")
_COPULAS = ("是",)  # "答案是否": 是 is the copula here, the answer is 否


def _anchored(matches: list[tuple[int, int, str]], keywords: list[tuple[int, int]], text: str) -> str | None:
    """The label right after the LAST keyword that is followed closely (within the same
    sentence) by one."""
    for _, ke in reversed(keywords):
        after = [m for m in matches if m[0] >= ke and m[0] - ke <= _ANCHOR_GAP
                 and not re.search(r"[.!?。！？\n]", text[ke:m[0]])]
        if not after:
            continue
        s, e, label = after[0]
        if text[s:e] in _COPULAS and len(after) > 1 and after[1][0] - e <= 2:
            label = after[1][2]
        return label
    return None


# --------------------------------------------------------------------------- closed words


def parse_label(text: str | None, language: str, table: Mapping[str, Mapping[str, tuple[str, ...]]],
                labels: Sequence[str]) -> str | None:
    """A yes/no/maybe or NLI label from ``text`` (see the module docstring for the rules)."""
    norm = normalize(text)
    if not norm:
        return None
    low = norm.lower()
    near = _label_words(table, (language, "en"), labels)
    bare = _strip_punct(low)
    everywhere = _label_words(table, table.keys(), labels)
    for words in (near, everywhere):  # 1. the whole answer is one word
        for w, label in words.items():
            if bare == _strip_punct(w):
                return label
    matches = _matches(low, near)
    found = _anchored(matches, _keyword_spans(low, language), low)  # 3.
    if found:
        return found
    if matches:  # 4.
        return matches[0][2]
    distinct = {m[2] for m in _matches(low, everywhere)}  # 5.
    return distinct.pop() if len(distinct) == 1 else None


def parse_yes_no_maybe(text: str | None, language: str = "en") -> str | None:
    return parse_label(text, language, YES_NO_MAYBE_WORDS, YES_NO_MAYBE)


def parse_nli(text: str | None, language: str = "en") -> str | None:
    return parse_label(text, language, NLI_WORDS, NLI_LABELS)


# ------------------------------------------------------------------------------ option letters


def _letter_words(letters: Sequence[str]) -> dict[str, str]:
    """Notation -> letter for the valid letters: Latin capitals and the script letters."""
    words = {l: l for l in letters}
    for seq in SCRIPT_LETTERS.values():
        for i, forms in enumerate(seq[:len(OPTION_LETTERS)]):
            if OPTION_LETTERS[i] in letters:
                for f in forms:
                    words.setdefault(f, OPTION_LETTERS[i])
    return words


_LEAD = re.compile(r"^\s*[\(\[（【]?\s*(\S)\s*(?:[\)\]）】.:：、\-—]|$)")


def parse_option(text: str | None, options: Mapping[str, str], language: str = "en") -> str | None:
    """The option letter ``text`` names (see the module docstring for the rules), or None."""
    norm = normalize(text)
    if not norm:
        return None
    letters = [l for l in OPTION_LETTERS if l in options]
    words = _letter_words(letters)
    bare = _strip_punct(norm)
    if bare in words:  # 1. "B", "(B)", "**B**", "ب", "(ख)"
        return words[bare]
    if bare.upper() in letters and len(bare) == 1:  # "b." lowercase alone
        return bare.upper()
    lead = _LEAD.match(norm)  # 2. "B. epinephrine", "(B) ..."
    if lead and lead.group(1) in words:
        return words[lead.group(1)]
    matches = _matches(norm, words)
    # Lowercase letters only right after a keyword ("answer: b"), where they cannot be words.
    low_matches = [m for m in _matches(norm, {l.lower(): l for l in letters})
                   if not re.match(r"\s*\w", norm[m[1]:])]
    keywords = _keyword_spans(norm.lower(), language)
    for cands in (matches, low_matches):  # 3. "Answer: B", "答案是B", "la respuesta es la B"
        found = _anchored(cands, keywords, norm)
        if found:
            return found
    named = _named_options(norm, options, letters)  # 4. the option text itself
    if len(named) == 1:
        return named.pop()
    standalone = {m[2] for m in matches if not _is_article(norm, m)}
    if len(standalone) == 1:
        return standalone.pop()
    return None


def _is_article(text: str, match: tuple[int, int, str]) -> bool:
    """English "A"/"I" used as words ("A patient with ...", "I think"), not option letters."""
    s, e, label = match
    return text[s:e] in ("A", "I") and bool(re.match(r"\s+[a-z]", text[e:]))


def _named_options(text: str, options: Mapping[str, str], letters: Sequence[str]) -> set[str]:
    """Letters whose option text occurs in ``text`` (an option contained in a longer named one
    does not count, e.g. "malaria" inside "cerebral malaria")."""
    low = text.lower()
    hits = {}
    for l in letters:
        opt = normalize(options[l]).lower().rstrip(".")
        if len(opt) >= 2 and find_word(low, opt):
            hits[l] = opt
    return {l for l, o in hits.items() if not any(o != p and o in p for p in hits.values())}


# ------------------------------------------------------------------------------------- entry


def parse_answer(text: str | None, record: Record) -> str | None:
    """The answer ``text`` gives for ``record``'s task family, or None (a parse failure)."""
    return _PARSERS[get_family(record.family).name](text, record)


# The answer parser of each task family (the family's hook into extraction).
_PARSERS: Mapping[str, Callable[[str | None, Record], str | None]] = {
    families.MCQA.name: lambda text, r: parse_option(text, r.options, r.language),
    families.YES_NO_MAYBE_FAMILY.name: lambda text, r: parse_yes_no_maybe(text, r.language),
    families.NLI.name: lambda text, r: parse_nli(text, r.language),
    families.OPEN_QA.name: lambda text, r: clean_text(text) or None,
}
