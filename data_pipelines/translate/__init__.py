"""GlobMed construction: translate normalized records into new languages with quality control.

    python -m data_pipelines.translate --input DIR --languages sw,yo --translator local:<hf dir> \\
        --output OUT [--source-language en] [--glossary FILE] [--batch-size N] [--limit N]

See ``docs/translation.md``. Modules: :mod:`.placeholders` (protected spans, glossary),
:mod:`.translators` (``Translator`` protocol, local model, API), :mod:`.cache` (resumable
SQLite cache), :mod:`.qc` (checks, language ID, chrF, report), :mod:`.review` (expert review
CSV export / import), :mod:`.pipeline` (the run).
"""

from data_pipelines.translate.cache import TranslationCache
from data_pipelines.translate.pipeline import RunResult, TranslateOptions, run, select_sources, translate_records
from data_pipelines.translate.placeholders import Glossary, GlossaryError, Protected, Protector, protect, restore
from data_pipelines.translate.qc import CHECKS, LanguageIdentifier, QCConfig
from data_pipelines.translate.review import ReviewError, ReviewResult, apply_review, export_review
from data_pipelines.translate.translators import (
    APITranslator, LocalTranslator, Translator, api_settings, clean_reply, make_translator, translation_messages)

__all__ = [
    "TranslationCache", "RunResult", "TranslateOptions", "run", "select_sources", "translate_records", "Glossary",
    "GlossaryError", "Protected", "Protector", "protect", "restore", "CHECKS", "LanguageIdentifier", "QCConfig",
    "ReviewError", "ReviewResult", "apply_review", "export_review", "APITranslator",
    "LocalTranslator", "Translator", "api_settings", "clean_reply", "make_translator", "translation_messages",
]
