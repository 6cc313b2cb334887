"""Option-position bias: every multiple-choice item scored again with its options cyclically shifted.

With ``permutations = k`` (a bench setting, ``config.permutations``), each mcqa item with ``n``
options is also scored in ``min(k, n - 1)`` shifted orderings: under shift ``s`` the letter at
position ``j`` shows the option that was at position ``(j + s) mod n``, and the gold letter moves
with its option. A model that reads the options picks the same underlying option in every
ordering; a model that prefers a letter follows the letter. ``k = n - 1`` visits every position
once per item, so the gold letters of all orderings are then uniformly spread.

Shifted records keep the item's id (so the same few-shot examples are drawn for them, see
``prompting.select_shots``) and carry ``meta["option_shift"]``; their predictions rows get the
record id ``"<id>#shift<s>"``, ``shift`` and ``predicted_original`` (the predicted option's letter
in the original order; shift-0 rows get both too when the pass is on).

Per model (``summarize``; items pooled over every cell with all their orderings present):

* ``accuracy``: mean accuracy over all ``k + 1`` orderings (shift 0 = as published), with a 95%
  bootstrap interval over items, next to ``accuracy_original`` (shift 0 only);
* ``consistency``: share of items whose predicted option (in the original order) is the same in
  every ordering, a parse failure counting as inconsistent, with a 95% interval;
* ``letters``: the predicted-letter and gold-letter distributions over all orderings (parse
  failures left out of the predicted one), their total variation distance
  ``0.5 * sum |p_pred - p_gold|`` and the chi-square statistic of the predicted counts against
  counts expected from the gold distribution.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from globmed_jax.data.families import get_family
from globmed_jax.data.schema import OPTION_LETTERS, Record
from globmed_jax.evaluation import metrics

SHIFT_KEY = "option_shift"  # Record.meta key of a shifted copy
ID_SEP = "#shift"

__all__ = ["shift_record", "shifted_records", "tag_rows", "row_ids", "unshifted", "summarize",
           "PositionBias", "fingerprint_fields", "cell_fields", "check_permutations"]


def check_permutations(k: Any) -> int:
    """``k`` as a non-negative int; ValueError naming the setting otherwise."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"permutations must be a non-negative integer (0 = off), got {k!r}")
    return int(k)


def _letters(record: Record) -> list[str]:
    return [l for l in OPTION_LETTERS if l in record.options]


def shift_record(record: Record, shift: int) -> Record:
    """``record`` with its options cyclically shifted by ``shift`` positions (letter ``j`` shows the
    option that was at ``(j + shift) mod n``) and the answer letter moved with its option."""
    letters = _letters(record)
    n = len(letters)
    if record.answer not in letters:
        raise ValueError(f"record {record.id}: answer {record.answer!r} is not an option letter {letters}")
    options = {letters[j]: record.options[letters[(j + shift) % n]] for j in range(n)}
    answer = letters[(letters.index(record.answer) - shift) % n]
    return dataclasses.replace(record, options=options, answer=answer, meta={**record.meta, SHIFT_KEY: shift})


def _shifts(record: Record, permutations: int) -> range:
    if not get_family(record.family).has_options:
        return range(0)
    return range(1, min(permutations, len(record.options) - 1) + 1)


def shifted_records(records: Sequence[Record], permutations: int) -> list[Record]:
    """The shifted copies of the multiple-choice ``records`` (shifts 1..min(k, n-1) each, item by
    item); other families get none."""
    k = check_permutations(permutations)
    return [shift_record(r, s) for r in records for s in _shifts(r, k)]


def shift_of(record: Record) -> int:
    return int(record.meta.get(SHIFT_KEY, 0))


def _row_id(record: Record) -> str:
    s = shift_of(record)
    return f"{record.id}{ID_SEP}{s}" if s else record.id


def row_ids(records: Sequence[Record]) -> list[str]:
    """The predictions-row record ids of ``records`` (shifted copies get ``#shift<s>``)."""
    return [_row_id(r) for r in records]


def original_letter(record: Record, letter: str | None) -> str | None:
    """The letter, in the unshifted order, of the option shown as ``letter`` in ``record``."""
    if letter is None:
        return None
    letters = _letters(record)
    return letters[(letters.index(letter) + shift_of(record)) % len(letters)]


def tag_rows(rows: list[dict[str, Any]], records: Sequence[Record]) -> None:
    """Marks the predictions rows of a cell scored with the permutation pass (in place): every
    mcqa row gets ``shift`` and ``predicted_original``; shifted rows get their own record id."""
    for row, r in zip(rows, records, strict=True):
        if not get_family(r.family).has_options:
            continue
        row["record_id"] = _row_id(r)
        row["shift"] = shift_of(r)
        row["predicted_original"] = original_letter(r, row["predicted"])


def unshifted(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The rows of the original orderings (what every other statistic reads)."""
    return [r for r in rows if not r.get("shift")]


# --------------------------------------------------------------------------- statistics


@dataclasses.dataclass(frozen=True)
class PositionBias:
    """One model's permutation-pass statistics (see the module docstring). Intervals: 95%
    bootstrap over items."""

    items: int
    orderings: int  # orderings per item (k + 1, the most common count)
    accuracy: tuple[float, float, float]  # (estimate, low, high)
    accuracy_original: float
    consistency: tuple[float, float, float]
    predicted_letters: dict[str, int]
    gold_letters: dict[str, int]
    tvd: float
    chi_square: float
    parse_failures: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def letter_distance(predicted: Mapping[str, int], gold: Mapping[str, int]) -> tuple[float, float]:
    """(total variation distance, chi-square statistic) of the predicted letter counts against
    the gold letter distribution (expected count = gold share x number of predictions; letters
    that are never gold but predicted make chi-square infinite)."""
    letters = sorted(set(predicted) | set(gold))
    p = np.array([predicted.get(l, 0) for l in letters], np.float64)
    g = np.array([gold.get(l, 0) for l in letters], np.float64)
    if p.sum() == 0 or g.sum() == 0:
        return float("nan"), float("nan")
    tvd = 0.5 * float(np.abs(p / p.sum() - g / g.sum()).sum())
    expected = g / g.sum() * p.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(expected > 0, (p - expected) ** 2 / np.where(expected > 0, expected, 1.0),
                         np.where(p > 0, np.inf, 0.0))
    return tvd, float(terms.sum())


def _mean_ci(values: np.ndarray, resamples: int, seed: int) -> tuple[float, float, float]:
    """Mean of per-item values with a 95% percentile bootstrap over items."""
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (resamples, values.size))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return float(values.mean()), float(low), float(high)


def summarize(predictions: Mapping[str, Sequence[Mapping[str, Any]]], *, resamples: int = 1000,
              seed: int = 0) -> dict[str, PositionBias]:
    """Per model, the statistics of the items scored in more than one ordering (models without a
    permutation pass are absent). An item counts only with all of its orderings present."""
    out = {}
    for model, rows in predictions.items():
        items: dict[tuple[str, str, str], dict[int, Mapping[str, Any]]] = defaultdict(dict)
        for row in rows:
            if "shift" in row:
                base = row["record_id"].split(ID_SEP)[0]
                items[(row["dataset"], row["language"], base)][int(row["shift"])] = row
        complete = [v for v in items.values() if len(v) > 1 and set(v) == set(range(len(v)))]
        if not complete:
            continue
        correct = np.array([np.mean([bool(r["correct"]) for r in v.values()]) for v in complete])
        original = np.array([bool(v[0]["correct"]) for v in complete], np.float64)
        same = [len({r["predicted_original"] for r in v.values()}) == 1 and v[0]["predicted_original"] is not None
                for v in complete]
        lo, hi = metrics.bootstrap_ci(same, num_resamples=resamples, seed=seed)
        predicted = Counter(r["predicted"] for v in complete for r in v.values() if r["predicted"] is not None)
        gold = Counter(r["gold"] for v in complete for r in v.values())
        tvd, chi2 = letter_distance(predicted, gold)
        out[model] = PositionBias(
            items=len(complete), orderings=Counter(len(v) for v in complete).most_common(1)[0][0],
            accuracy=_mean_ci(correct, resamples, seed), accuracy_original=float(original.mean()),
            consistency=(float(np.mean(same)), lo, hi),
            predicted_letters=dict(sorted(predicted.items())), gold_letters=dict(sorted(gold.items())),
            tvd=tvd, chi_square=chi2,
            parse_failures=sum(r["predicted"] is None for v in complete for r in v.values()))
    return out


# ------------------------------------------------------------------------------ runner hooks


def fingerprint_fields(config: Any, records: Sequence[Record]) -> dict[str, Any]:
    """``bench.permutations`` for cells with multiple-choice items when the pass is on (other
    cells are unaffected by it, so their fingerprint does not change)."""
    k = check_permutations(config.permutations)
    if k and any(get_family(r.family).has_options for r in records):
        return {"bench.permutations": k}
    return {}


def cell_fields(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Results-row fields of one cell's permutation pass, from its tagged predictions rows:
    ``perm_accuracy`` (mean over all orderings) and ``perm_consistency``; {} without the pass."""
    bias = summarize({"_": rows}, resamples=1).get("_")
    if bias is None:
        return {}
    return {"perm_accuracy": bias.accuracy[0], "perm_consistency": bias.consistency[0]}
