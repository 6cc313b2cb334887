"""Benchmark statistics on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from globmed_jax.evaluation import metrics
from globmed_jax.evaluation.judge import parse_score


@pytest.mark.parametrize("n,p", [(20, 0.5), (50, 0.8), (200, 0.3), (1000, 0.62)])
def test_bootstrap_ci_contains_point_estimate(n, p):
    correct = np.arange(n) < round(p * n)
    lo, hi = metrics.bootstrap_ci(correct, seed=3)
    acc = metrics.accuracy(correct)
    assert lo <= acc <= hi
    assert 0.0 <= lo < hi <= 1.0
    # A 95% interval of a proportion is roughly +-1.96 standard errors wide.
    se = math.sqrt(acc * (1 - acc) / n)
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.25)


def test_bootstrap_ci_narrows_with_n_and_is_seeded():
    widths = []
    for n in (25, 100, 400, 1600):
        lo, hi = metrics.bootstrap_ci(np.arange(n) % 4 != 0, seed=0)  # 75% correct
        widths.append(hi - lo)
    assert all(a > b for a, b in zip(widths, widths[1:])), widths
    x = np.arange(60) % 3 == 0
    assert metrics.bootstrap_ci(x, seed=7) == metrics.bootstrap_ci(x, seed=7)


def test_bootstrap_ci_degenerate_inputs():
    assert metrics.bootstrap_ci([True] * 10) == (1.0, 1.0)
    assert metrics.bootstrap_ci([False] * 10) == (0.0, 0.0)
    lo, hi = metrics.bootstrap_ci([])
    assert math.isnan(lo) and math.isnan(hi)


def test_resource_gap_hand_computed():
    # high: en .9, zh .7, fr .8 -> .8 ; low: sw .5, yo .3 -> .4 ; gap .4
    acc = {"en": 0.9, "zh": 0.7, "fr": 0.8, "sw": 0.5, "yo": 0.3}
    assert metrics.resource_gap(acc) == pytest.approx(0.4)
    assert math.isnan(metrics.resource_gap({"en": 0.9, "zh": 0.7}))  # no low-resource language


def test_consistency_hand_computed():
    answers = [
        ("d/q1", "en", "A"), ("d/q1", "sw", "A"), ("d/q1", "zh", "A"),  # consistent
        ("d/q2", "en", "B"), ("d/q2", "sw", "C"),  # not
        ("d/q3", "en", "yes"), ("d/q3", "am", "yes"),  # consistent
        ("d/q4", "en", None), ("d/q4", "fr", None),  # parse failures never agree
        ("d/q5", "en", "D"),  # one language only: left out
    ]
    assert metrics.consistency(answers) == pytest.approx(2 / 4)
    assert math.isnan(metrics.consistency([("d/q", "en", "A")]))


def test_macro_average_weighs_languages_equally():
    rows = [
        {"model": "m", "dataset": "a", "language": "en", "accuracy": 1.0},
        {"model": "m", "dataset": "b", "language": "en", "accuracy": 0.5},  # en: .75
        {"model": "m", "dataset": "a", "language": "sw", "accuracy": 0.25},  # sw: .25
        {"model": "m", "dataset": "open", "language": "sw", "accuracy": None},  # ignored
        {"model": "k", "dataset": "a", "language": "en", "accuracy": 0.4},
    ]
    by_lang = metrics.macro_average(rows, over="language")
    assert by_lang[("m",)] == pytest.approx(0.5)
    assert by_lang[("k",)] == pytest.approx(0.4)
    # over datasets: a = mean(1.0, .25) = .625, b = .5 -> .5625
    assert metrics.macro_average(rows, over="dataset")[("m",)] == pytest.approx(0.5625)
    with pytest.raises(ValueError):
        metrics.macro_average(rows, over="model")


def test_chrf_and_rouge_l():
    refs = ["Epinephrine is the first-line drug.", "肾上腺素是一线用药。"]
    assert metrics.chrf(refs, refs) == pytest.approx(100.0)
    assert metrics.rouge_l(refs, refs) == pytest.approx(100.0)
    assert metrics.rouge_l(["xyz qqq", "abc"], refs) == pytest.approx(0.0)
    partial = metrics.rouge_l(["Epinephrine is used", "肾上腺素"], refs)
    assert 0.0 < partial < 100.0
    # Chinese is scored per character (rouge-score's own tokenizer would drop it entirely):
    # "肾上腺素" vs the 9-character reference: LCS 4, P = 1, R = 4/9 -> F1 = 8/13.
    assert metrics.rouge_l(["肾上腺素"], ["肾上腺素是一线用药。"]) == pytest.approx(100 * 8 / 13)
    assert 0.0 < metrics.chrf(["Epinephrine is used"], ["Epinephrine is the first-line drug."]) < 100.0


def test_multilingual_tokenize():
    assert metrics.multilingual_tokenize("Bẹ́ẹ̀ni, ó dára") == ["bẹ́ẹ̀ni", "ó", "dára"]
    assert metrics.multilingual_tokenize("答案是B") == ["答", "案", "是", "b"]
    assert metrics.multilingual_tokenize("उत्तर: हाँ") == ["उत्तर", "हाँ"]


@pytest.mark.parametrize("text,score", [
    ("4", 4), ("Score: 5", 5), ("**3**/5", 3), ("2 - mostly wrong", 2), ("I'd give it a 1.", 1),
    ("10", None), ("0", None), ("4.5", None), ("", None), ("no idea", None),
])
def test_judge_score_parsing(text, score):
    assert parse_score(text) == score
