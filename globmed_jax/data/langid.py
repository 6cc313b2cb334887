"""Offline language identification (``lingua-language-detector``), for translation QC and for the
bench's language-fidelity check of generated answers.

``LanguageIdentifier.status(text, language)`` says whether ``text`` is written in ``language``:
``pass`` / ``fail`` / ``undetectable`` (the detector does not know the language, e.g. Amharic) /
``too_short`` (fewer than ``min_chars`` letters). Without the package every language is
``undetectable`` (a warning is logged once).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

log = logging.getLogger(__name__)

# Pairs a low-accuracy detector cannot reliably tell apart on short text: accepted as the target.
CONFUSABLE: Mapping[str, frozenset[str]] = {
    "zu": frozenset({"xh"}), "xh": frozenset({"zu"}), "ms": frozenset({"id"}), "id": frozenset({"ms"}),
    "st": frozenset({"tn"}), "tn": frozenset({"st"}), "hi": frozenset({"mr"}),
    "nb": frozenset({"nn"}), "nn": frozenset({"nb"}), "bs": frozenset({"hr", "sr"}), "hr": frozenset({"bs", "sr"}),
}


class LanguageIdentifier:
    """Offline language ID with ``lingua-language-detector`` (all of its languages except Latin
    and Esperanto: medical text is full of Latin names). ``status(text, language)`` returns
    ``(status, detected)`` with status ``pass`` / ``fail`` / ``undetectable`` / ``too_short``.
    Without the package every language is ``undetectable`` (a warning is logged once)."""

    def __init__(self, accuracy: str = "low", min_chars: int = 20):
        self.accuracy, self.min_chars = accuracy, min_chars
        self._detector = None
        self._supported: dict[str, Any] | None = None

    def _load(self) -> None:
        if self._supported is not None:
            return
        try:
            from lingua import Language, LanguageDetectorBuilder
        except ImportError:
            log.warning("lingua-language-detector is not installed (pip install 'globmed-jax[translate]'): "
                        "language ID reports every language as undetectable")
            self._supported = {}
            return
        langs = [lang for lang in Language.all() if lang not in (Language.LATIN, Language.ESPERANTO)]
        builder = LanguageDetectorBuilder.from_languages(*langs)
        if self.accuracy == "low":
            builder = builder.with_low_accuracy_mode()
        self._detector = builder.build()
        self._supported = {lang.iso_code_639_1.name.lower(): lang for lang in langs}

    def supports(self, language: str) -> bool:
        self._load()
        return language in self._supported

    def detect(self, text: str) -> str | None:
        self._load()
        if self._detector is None:
            return None
        lang = self._detector.detect_language_of(text)
        return None if lang is None else lang.iso_code_639_1.name.lower()

    def status(self, text: str, language: str) -> tuple[str, str | None]:
        if not self.supports(language):
            return "undetectable", None
        if sum(ch.isalpha() for ch in text) < self.min_chars:
            return "too_short", None
        detected = self.detect(text)
        ok = detected == language or detected in CONFUSABLE.get(language, ())
        return ("pass" if ok else "fail"), detected
