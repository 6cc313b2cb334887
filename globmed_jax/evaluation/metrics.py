"""Benchmark statistics: bootstrap intervals, macro averages, resource gap, cross-lingual
consistency, and open-QA overlap metrics (chrF via sacrebleu, ROUGE-L via rouge-score).

Everything here is pure numpy/Python on already-computed results, so it is cheap to test.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import defaultdict
from typing import Iterable, Mapping, Sequence

import numpy as np

from globmed_jax.data.languages import get_language

__all__ = ["accuracy", "bootstrap_ci", "macro_average", "resource_gap", "consistency", "consistency_outcomes", "chrf", "rouge_l",
           "multilingual_tokenize"]


def accuracy(correct: Sequence[bool]) -> float:
    return float(np.mean(np.asarray(correct, np.float64))) if len(correct) else float("nan")


def bootstrap_ci(correct: Sequence[bool] | np.ndarray, *, num_resamples: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap ``(1 - alpha)`` interval of the mean of 0/1 outcomes.

    Resamples are drawn as binomial counts (equivalent to resampling items with replacement for
    0/1 data, and O(num_resamples) instead of O(num_resamples * n)). Seeded: same input, same
    interval. An empty input gives (nan, nan)."""
    x = np.asarray(correct, np.float64)
    n = x.size
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = rng.binomial(n, x.mean(), size=num_resamples) / n
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _nanmean(values: Iterable[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


def macro_average(rows: Iterable[Mapping], *, over: str, key: str = "accuracy",
                  group: Sequence[str] = ("model",)) -> dict[tuple, float]:
    """Macro average of ``key`` over ``over`` ("language" or "dataset").

    The other cell coordinate is averaged first, so each ``over`` value weighs the same
    regardless of how many datasets/languages it has: for ``over="language"``, per language the
    mean over its datasets, then the mean over languages. Returns ``{group values: average}``.
    Rows whose ``key`` is None/NaN (e.g. open-QA rows for accuracy) are ignored."""
    if over not in ("language", "dataset"):
        raise ValueError(f"over must be 'language' or 'dataset', got {over!r}")
    cells: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        v = row.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        cells[tuple(row[g] for g in group)][row[over]].append(float(v))
    return {g: _nanmean(_nanmean(vs) for vs in by_over.values()) for g, by_over in cells.items()}


def resource_gap(accuracy_by_language: Mapping[str, float]) -> float:
    """Mean accuracy of high-resource minus mean of low-resource languages (registry's split).

    NaN when either group is absent."""
    high = [v for k, v in accuracy_by_language.items() if not get_language(k).low_resource]
    low = [v for k, v in accuracy_by_language.items() if get_language(k).low_resource]
    return _nanmean(high) - _nanmean(low)


def consistency_outcomes(answers: Iterable[tuple[str, str, str | None]]) -> dict[str, bool]:
    """Per item key, whether it was answered identically in every language where it appears.

    ``answers``: ``(item key, language, predicted)``; the item key should identify the source item
    across translations (``dataset + "/" + source_id``). Items seen in fewer than two languages
    are left out (trivially consistent); a parse failure (None) never agrees with anything."""
    by_item: dict[str, dict[str, str | None]] = defaultdict(dict)
    for key, lang, pred in answers:
        by_item[key][lang] = pred
    out = {}
    for key, langs in by_item.items():
        if len(langs) < 2:
            continue
        vals = list(langs.values())
        out[key] = all(v is not None for v in vals) and len(set(vals)) == 1
    return out


def consistency(answers: Iterable[tuple[str, str, str | None]]) -> float:
    """Fraction of items answered identically in every language where they appear
    (``consistency_outcomes``). NaN when no item has two languages."""
    agree = list(consistency_outcomes(answers).values())
    return float(np.mean(agree)) if agree else float("nan")


# ------------------------------------------------------------------------------- open QA


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (sacrebleu defaults: character 6-grams, beta 2), 0-100. Character n-grams
    need no word segmentation, so it is comparable across all 12 languages."""
    import sacrebleu

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        return float("nan")
    return float(sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score)


_SEGMENTED = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\u0e00-\u0e7f]")


def multilingual_tokenize(text: str) -> list[str]:
    """Lowercased word tokens on Unicode word characters; Han/kana/Thai split per character
    (no spaces between words there). rouge-score's default tokenizer keeps only [a-z0-9], which
    would erase Chinese, Arabic, Hindi, Japanese, Korean and Amharic entirely."""
    text = unicodedata.normalize("NFKC", text).lower()
    tokens = []
    for word in re.findall(r"[\w\u0300-\u036f\u0900-\u097f\u0600-\u06ff]+", text):
        if _SEGMENTED.search(word):
            tokens.extend(t for t in re.split(f"({_SEGMENTED.pattern})", word) if t)
        else:
            tokens.append(word)
    return tokens


class _Tokenizer:
    """The ``tokenize(text) -> list[str]`` object rouge-score accepts."""

    def tokenize(self, text: str) -> list[str]:
        return multilingual_tokenize(text)


def rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F1 (rouge-score, multilingual tokenizer), 0-100."""
    from rouge_score import rouge_scorer

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        return float("nan")
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Tokenizer())
    return 100.0 * float(np.mean([scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references)]))
