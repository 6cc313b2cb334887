"""Language registry: ISO 639-1 code, English name, script, resource level.

The GlobMed paper names 12 languages, four of them low-resource, but its exact list is not
public. ``DEFAULT_LANGUAGES`` is therefore a configurable choice, not the paper's word:
eight high-resource languages of the public release plus Swahili, Yoruba, Zulu and Amharic
(low-resource, as in MultiMed-X / AfriMed-QA / CURE-Med).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable


@dataclasses.dataclass(frozen=True)
class Language:
    code: str  # ISO 639-1 (or 639-3 where no 639-1 code exists)
    name: str
    script: str  # ISO 15924
    low_resource: bool


LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language("en", "English", "Latn", False),
        Language("zh", "Chinese", "Hans", False),
        Language("es", "Spanish", "Latn", False),
        Language("fr", "French", "Latn", False),
        Language("ar", "Arabic", "Arab", False),
        Language("hi", "Hindi", "Deva", False),
        Language("ja", "Japanese", "Jpan", False),
        Language("ko", "Korean", "Kore", False),
        Language("de", "German", "Latn", False),
        Language("pt", "Portuguese", "Latn", False),
        Language("ru", "Russian", "Cyrl", False),
        Language("it", "Italian", "Latn", False),
        Language("id", "Indonesian", "Latn", False),
        Language("ms", "Malay", "Latn", False),
        Language("bn", "Bengali", "Beng", False),
        Language("tr", "Turkish", "Latn", False),
        Language("vi", "Vietnamese", "Latn", False),
        Language("th", "Thai", "Thai", False),
        Language("sw", "Swahili", "Latn", True),
        Language("yo", "Yoruba", "Latn", True),
        Language("zu", "Zulu", "Latn", True),
        Language("am", "Amharic", "Ethi", True),
        Language("ha", "Hausa", "Latn", True),
        Language("ig", "Igbo", "Latn", True),
        Language("xh", "Xhosa", "Latn", True),
        Language("wo", "Wolof", "Latn", True),
        # The African-language MMLU translations (Bridging-the-Gap) add these; all scarce in
        # medical text, so low-resource relative to GlobMed's high-resource set.
        Language("af", "Afrikaans", "Latn", True),
        Language("bm", "Bambara", "Latn", True),
        Language("nso", "Northern Sotho", "Latn", True),
        Language("sn", "Shona", "Latn", True),
        Language("st", "Southern Sotho", "Latn", True),
        Language("tn", "Tswana", "Latn", True),
        Language("ts", "Tsonga", "Latn", True),
    )
}

DEFAULT_LANGUAGES: tuple[str, ...] = ("en", "zh", "es", "fr", "ar", "hi", "ja", "ko", "sw", "yo", "zu", "am")

# English names (as some sources write them, e.g. CURE-Med "Swahili") -> code.
_BY_NAME = {lang.name.lower(): code for code, lang in LANGUAGES.items()}


def get_language(code_or_name: str) -> Language:
    """Looks a language up by ISO code or English name; KeyError names the unknown value."""
    key = code_or_name.strip()
    if key in LANGUAGES:
        return LANGUAGES[key]
    if key.lower() in _BY_NAME:
        return LANGUAGES[_BY_NAME[key.lower()]]
    raise KeyError(f"unknown language {code_or_name!r}; known codes: {sorted(LANGUAGES)}")


def low_resource(codes: Iterable[str]) -> tuple[str, ...]:
    return tuple(c for c in codes if get_language(c).low_resource)


def high_resource(codes: Iterable[str]) -> tuple[str, ...]:
    return tuple(c for c in codes if not get_language(c).low_resource)
