"""Letter and cloze formulations of closed-form items, ``acc`` / ``acc_norm``, and OLMES best-of.

Two formulations (``FORMULATIONS``), both with the options listed in the prompt:

* ``letter`` (``PromptConfig(mcqa_answer="letter")``): the model answers with the option letter;
  the letters are scored (OLMES's multiple-choice formulation, MCF);
* ``cloze`` (``mcqa_answer="option_text"``): each option's TEXT is scored as the continuation
  of the prompt. OLMES's cloze formulation (CF) leaves the options out of the prompt; here they
  stay in, because that is the prompt the option-text models of this project are trained on.

Families without options (yes/no/maybe, NLI) have one prompt and one answer set in both
formulations, so such a cell is predicted once and that prediction counts for both.

Metrics per formulation (log-likelihood scoring): ``accuracy`` (``acc``: the argmax of the summed
log-probabilities of the choice's tokens) and, for cloze, ``accuracy_norm`` (``acc_norm``: the
argmax of that sum divided by the choice's length in CHARACTERS, Unicode code points of the
choice text; lm-evaluation-harness's ``acc_norm`` divides by the continuation string's length
the same way). Per-character, not per-token, so that the normalisation does not depend on the
model's tokenizer. Generation (API models, ``mode="generate"``) reports ``accuracy`` only.

Best-of (OLMES): per model, the better of letter ``accuracy`` and cloze ``accuracy_norm`` (the
cloze ``accuracy`` when cloze was generated), each macro-averaged like the leaderboard's Avg. One
fixed normalisation per formulation, so best-of picks between two numbers, not among many.
OLMES picks per task; here the pick is per model over all of its closed-form cells.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from globmed_jax.data.families import get_family
from globmed_jax.data.prompts import PromptConfig, answer_choices, choice_labels, gold_label
from globmed_jax.data.schema import Record
from globmed_jax.evaluation import metrics

FORMULATIONS: Mapping[str, str] = {"letter": "letter", "cloze": "option_text"}  # name -> PromptConfig.mcqa_answer
NORMALIZATION = "per_character"
NORMALIZED = "cloze"  # the formulation acc_norm is reported for

__all__ = ["FORMULATIONS", "NORMALIZATION", "check", "primary", "scored", "prompt_config", "predict_all",
           "ItemScore", "score_item", "cell_fields", "item_fields", "model_averages", "best_of"]


def check(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` as a tuple; ValueError for an unknown or repeated name."""
    names = tuple(names)
    bad = [n for n in names if n not in FORMULATIONS]
    if bad or len(set(names)) != len(names):
        raise ValueError(f"formulations must be distinct names from {tuple(FORMULATIONS)}, got {names!r}")
    return names


def of_answer_format(mcqa_answer: str) -> str:
    """The formulation of a ``PromptConfig.mcqa_answer`` value."""
    for name, fmt in FORMULATIONS.items():
        if fmt == mcqa_answer:
            return name
    raise ValueError(f"mcqa_answer must be one of {tuple(FORMULATIONS.values())}, got {mcqa_answer!r}")


def primary(config: Any, spec: Any) -> str:
    """The formulation of a model's main results (its ``mcqa_answer``, else the run's)."""
    return of_answer_format(spec.mcqa_answer or config.mcqa_answer)


def scored(config: Any, spec: Any) -> tuple[str, ...]:
    """The formulations a model's closed-form cells are scored in: its primary one first, then
    ``config.formulations`` in their order."""
    return tuple(dict.fromkeys((primary(config, spec), *check(config.formulations))))


def prompt_config(base: PromptConfig, formulation: str) -> PromptConfig:
    return dataclasses.replace(base, mcqa_answer=FORMULATIONS[check((formulation,))[0]])


def predict_all(predict: Callable[[str], list[Any]], records: Sequence[Record],
                names: Sequence[str]) -> dict[str, list[Any]]:
    """``{formulation: predictions}`` from ``predict(formulation)``; a cell whose families have
    no options (the prompts and choices are the same in every formulation) is predicted once."""
    if not any(get_family(r.family).has_options for r in records):
        preds = predict(names[0])
        return {n: preds for n in names}
    return {n: predict(n) for n in names}


# ------------------------------------------------------------------------------ per item


@dataclasses.dataclass(frozen=True)
class ItemScore:
    """One item in one formulation. ``predicted_norm`` / ``correct_norm``: the acc_norm
    prediction (None where not reported: letter, or generation)."""

    predicted: str | None
    correct: bool
    predicted_norm: str | None = None
    correct_norm: bool | None = None


def choice_chars(record: Record, formulation: str) -> list[int]:
    """Length in characters of each answer choice as scored in ``formulation``."""
    return [len(c) for c in answer_choices(record, prompt_config(PromptConfig(), formulation))]


def score_item(record: Record, prediction: Any, formulation: str) -> ItemScore:
    gold = gold_label(record)
    correct = prediction.predicted is not None and prediction.predicted == gold
    scores = getattr(prediction, "scores", None)
    if formulation != NORMALIZED or scores is None:
        return ItemScore(prediction.predicted, correct)
    per_char = np.asarray(scores, np.float64) / np.asarray(choice_chars(record, formulation), np.float64)
    norm = choice_labels(record)[int(np.argmax(per_char))]
    return ItemScore(prediction.predicted, correct, norm, norm == gold)


def _interval(correct: Sequence[bool], resamples: int, seed: int) -> tuple[float, float, float]:
    lo, hi = metrics.bootstrap_ci(correct, num_resamples=resamples, seed=seed)
    return metrics.accuracy(correct), lo, hi


def cell_fields(records: Sequence[Record], by_formulation: Mapping[str, Sequence[Any]], main: str, *,
                resamples: int, seed: int) -> dict[str, Any]:
    """A closed-form results row's formulation fields: ``formulation`` (the one ``accuracy``
    is), ``normalization`` and ``formulations`` ``{name: {accuracy, ci_low, ci_high[,
    accuracy_norm, norm_ci_low, norm_ci_high]}}`` (seeded percentile bootstrap, as the row's)."""
    out: dict[str, Any] = {}
    for name, preds in by_formulation.items():
        items = [score_item(r, p, name) for r, p in zip(records, preds)]
        acc, lo, hi = _interval([s.correct for s in items], resamples, seed)
        entry: dict[str, Any] = {"accuracy": acc, "ci_low": lo, "ci_high": hi}
        if items and all(s.correct_norm is not None for s in items):
            acc, lo, hi = _interval([bool(s.correct_norm) for s in items], resamples, seed)
            entry.update(accuracy_norm=acc, norm_ci_low=lo, norm_ci_high=hi)
        out[name] = entry
    return {"formulation": main, "normalization": NORMALIZATION, "formulations": out}


def item_fields(records: Sequence[Record], by_formulation: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Per item, ``{"formulations": {name: {predicted, correct[, predicted_norm, correct_norm],
    scores and chars (log-likelihood) or text and parse_failed (generation)}}}``: enough to
    recompute every metric of the row by hand."""
    out = []
    for i, r in enumerate(records):
        entry = {}
        for name, preds in by_formulation.items():
            p, s = preds[i], score_item(r, preds[i], name)
            e: dict[str, Any] = {"predicted": s.predicted, "correct": s.correct}
            if s.correct_norm is not None:
                e.update(predicted_norm=s.predicted_norm, correct_norm=s.correct_norm)
            if getattr(p, "scores", None) is not None:
                e.update(scores=list(p.scores), chars=choice_chars(r, name))
            else:
                e.update(text=p.text, parse_failed=p.parse_failed)
            entry[name] = e
        out.append({"formulations": entry})
    return out


# ---------------------------------------------------------------------------- leaderboard


COLUMNS = (("letter", "accuracy"), ("cloze", "accuracy"), ("cloze", "accuracy_norm"))


def model_averages(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[tuple[str, str], float]]:
    """Per model, ``{(formulation, metric): macro average over languages}`` (per language the
    mean over its datasets first, like the leaderboard's Avg) for each of ``COLUMNS`` it has."""
    flat: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        for name, entry in (row.get("formulations") or {}).items():
            for metric in ("accuracy", "accuracy_norm"):
                if entry.get(metric) is not None:
                    flat[(name, metric)].append({"model": row["model"], "language": row["language"],
                                                 "dataset": row["dataset"], "value": entry[metric]})
    out: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
    for column, cells in flat.items():
        for (model,), value in metrics.macro_average(cells, over="language", key="value").items():
            out[model][column] = value
    return dict(out)


def best_of(averages: Mapping[tuple[str, str], float]) -> tuple[float, str] | None:
    """``(value, label)``: the better of letter ``accuracy`` and cloze ``accuracy_norm`` (cloze
    ``accuracy`` when there is no acc_norm); None unless both formulations are there. A tie goes
    to letter."""
    letter = averages.get(("letter", "accuracy"))
    cloze_key = ("cloze", "accuracy_norm") if ("cloze", "accuracy_norm") in averages else ("cloze", "accuracy")
    cloze = averages.get(cloze_key)
    if letter is None or cloze is None or math.isnan(letter) or math.isnan(cloze):
        return None
    label = "cloze, acc_norm" if cloze_key[1] == "accuracy_norm" else "cloze, acc"
    return (letter, "letter") if letter >= cloze else (cloze, label)
