"""Paired statistics over the same items: model differences, the resource gap, cross-lingual
consistency, and agreement between log-likelihood and generation scoring.

Everything reads predictions rows (``runner.read_predictions``): closed-form rows of the original
option order only (``position_bias.unshifted``), paired on ``record_id``.

**Averages** are the leaderboard's: per (dataset, language) cell the mean correctness, per
language the mean over its datasets, ``Avg`` the mean over languages, the gap the mean over
high-resource languages minus the mean over low-resource ones (``data.languages``).

**Bootstrap** (percentile, 95%, seeded): items are resampled within each cell, with the SAME
draws for every model compared (paired). When every language of a dataset holds the same source
items (translations, as GlobMed's parallel data and GlobMed-mini do), the draw is made once per
dataset and applied to every language, i.e. source items are resampled with all their
translations: the gap and the cross-lingual statistics compare the same items across languages,
and treating translations as independent would understate their uncertainty. Otherwise each
cell is resampled on its own. ``scheme`` in every result says which was used.

A model difference is computed on the items both models have (``items`` counts them), so it can
differ from the difference of two leaderboard rows computed on different item sets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from globmed_jax.data.families import get_family
from globmed_jax.data.languages import get_language
from globmed_jax.evaluation import metrics
from globmed_jax.evaluation.position_bias import unshifted

__all__ = ["Estimate", "ItemTable", "item_table", "resource_gap", "model_difference", "consistency",
           "Agreement", "scoring_agreement", "cohen_kappa"]

Cell = tuple[str, str]  # (dataset, language)
ALPHA = 0.05


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A statistic with its 95% bootstrap interval and the number of items behind it."""

    value: float
    low: float
    high: float
    items: int
    scheme: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in dataclasses.asdict(self).items()}


NAN = Estimate(float("nan"), float("nan"), float("nan"), 0)


def _closed(row: Mapping[str, Any]) -> bool:
    family = row["family"] if "family" in row else row["task"]
    return get_family(family).closed and row.get("correct") is not None


@dataclasses.dataclass(frozen=True)
class ItemTable:
    """Correctness of several models on their common items: per cell, the items' source ids
    (sorted) and a ``[models, items]`` 0/1 float array."""

    models: tuple[str, ...]
    source_ids: dict[Cell, list[str]]
    correct: dict[Cell, np.ndarray]

    @property
    def items(self) -> int:
        return sum(len(v) for v in self.source_ids.values())


def item_table(predictions: Mapping[str, Sequence[Mapping[str, Any]]], models: Sequence[str]) -> ItemTable:
    """The items (closed-form, original option order) every one of ``models`` answered."""
    per_model = []
    for m in models:
        rows = {}
        for r in unshifted(predictions.get(m, ())):
            if _closed(r):
                rows[(r["dataset"], r["language"], r["record_id"])] = r
        per_model.append(rows)
    common = set(per_model[0]).intersection(*per_model[1:]) if per_model else set()
    by_cell: dict[Cell, list[tuple[str, str]]] = defaultdict(list)
    for d, l, rid in common:
        by_cell[(d, l)].append((str(per_model[0][(d, l, rid)].get("source_id", rid)), rid))
    source_ids, correct = {}, {}
    for cell in sorted(by_cell):
        keys = sorted(by_cell[cell])
        source_ids[cell] = [s for s, _ in keys]
        correct[cell] = np.array([[float(bool(rows[(*cell, rid)]["correct"])) for _, rid in keys]
                                  for rows in per_model], np.float64)
    return ItemTable(tuple(models), source_ids, correct)


def _draws(table: ItemTable, resamples: int, seed: int) -> tuple[dict[Cell, np.ndarray], str]:
    """Per cell, ``[resamples, items]`` bootstrap indices (aligned per dataset when possible)."""
    rng = np.random.default_rng(seed)
    by_dataset: dict[str, list[Cell]] = defaultdict(list)
    for cell in table.source_ids:
        by_dataset[cell[0]].append(cell)
    out, schemes = {}, set()
    for dataset in sorted(by_dataset):
        cells = by_dataset[dataset]
        ids = [table.source_ids[c] for c in cells]
        if len(cells) > 1 and all(i == ids[0] for i in ids):
            idx = rng.integers(0, len(ids[0]), (resamples, len(ids[0])))
            out.update({c: idx for c in cells})
            schemes.add("source items across languages")
        else:
            for c in cells:
                out[c] = rng.integers(0, len(table.source_ids[c]), (resamples, len(table.source_ids[c])))
            schemes.add("items within each cell")
    return out, " + ".join(sorted(schemes))


def _macro(cell_values: Mapping[Cell, np.ndarray], languages: Iterable[str] | None = None) -> np.ndarray:
    """Mean over languages of the mean over datasets; works on scalars and on ``[R]`` arrays
    alike. NaN when no cell qualifies."""
    keep = None if languages is None else set(languages)
    by_lang: dict[str, list[np.ndarray]] = defaultdict(list)
    for (_, lang), v in cell_values.items():
        if keep is None or lang in keep:
            by_lang[lang].append(np.asarray(v, np.float64))
    if not by_lang:
        return np.asarray(float("nan"))
    return np.mean([np.mean(vs, axis=0) for vs in by_lang.values()], axis=0)


def _gap(cell_values: Mapping[Cell, np.ndarray]) -> np.ndarray:
    langs = {l for _, l in cell_values}
    low = [l for l in langs if get_language(l).low_resource]
    high = [l for l in langs if not get_language(l).low_resource]
    if not low or not high:
        return np.asarray(float("nan"))
    return _macro(cell_values, high) - _macro(cell_values, low)


def _estimate(point: np.ndarray, reps: np.ndarray, items: int, scheme: str) -> Estimate:
    point = float(point)
    if math.isnan(point) or reps.size == 0:
        return Estimate(point, float("nan"), float("nan"), items, scheme)
    low, high = np.quantile(reps, [ALPHA / 2, 1 - ALPHA / 2])
    return Estimate(point, float(low), float(high), items, scheme)


def _point_and_reps(table: ItemTable, resamples: int, seed: int):
    """Per model index: cell means (point) and ``[R]`` resampled cell means."""
    draws, scheme = _draws(table, resamples, seed)
    points = [{c: v[i].mean() for c, v in table.correct.items()} for i in range(len(table.models))]
    reps = [{c: v[i][draws[c]].mean(axis=1) for c, v in table.correct.items()} for i in range(len(table.models))]
    return points, reps, scheme


def resource_gap(predictions: Mapping[str, Sequence[Mapping[str, Any]]], model: str, *,
                 resamples: int = 1000, seed: int = 0) -> Estimate:
    """High- minus low-resource macro accuracy of ``model`` with its bootstrap interval (NaN
    when either group is absent)."""
    table = item_table(predictions, [model])
    if not table.items:
        return NAN
    points, reps, scheme = _point_and_reps(table, resamples, seed)
    return _estimate(_gap(points[0]), _gap(reps[0]), table.items, scheme)


@dataclasses.dataclass(frozen=True)
class Difference:
    """``a`` minus ``b`` on their common items: ``avg`` (macro accuracy) and ``gap`` (their
    resource gaps), each with a paired 95% interval."""

    a: str
    b: str
    avg: Estimate
    gap: Estimate
    cells: int

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "avg": self.avg.to_json(), "gap": self.gap.to_json(), "cells": self.cells}


def model_difference(predictions: Mapping[str, Sequence[Mapping[str, Any]]], a: str, b: str, *,
                     resamples: int = 1000, seed: int = 0) -> Difference:
    """Paired bootstrap of ``Avg(a) - Avg(b)`` and ``Gap(a) - Gap(b)`` over the items both have."""
    table = item_table(predictions, [a, b])
    if not table.items:
        return Difference(a, b, NAN, NAN, 0)
    points, reps, scheme = _point_and_reps(table, resamples, seed)
    avg = _estimate(_macro(points[0]) - _macro(points[1]), _macro(reps[0]) - _macro(reps[1]), table.items, scheme)
    gap = _estimate(_gap(points[0]) - _gap(points[1]), _gap(reps[0]) - _gap(reps[1]), table.items, scheme)
    return Difference(a, b, avg, gap, len(table.correct))


def consistency(rows: Sequence[Mapping[str, Any]], *, resamples: int = 1000, seed: int = 0) -> Estimate:
    """Cross-lingual consistency (``metrics.consistency``: share of source items answered
    identically in every language they appear in) with a bootstrap interval over source items."""
    outcomes = metrics.consistency_outcomes(
        (f"{r['dataset']}/{r['source_id']}", r["language"], r["predicted"]) for r in unshifted(rows) if _closed(r))
    agree = list(outcomes.values())
    if not agree:
        return NAN
    low, high = metrics.bootstrap_ci(agree, num_resamples=resamples, alpha=ALPHA, seed=seed)
    return Estimate(float(np.mean(agree)), low, high, len(agree), "source items")


# ---------------------------------------------------------------------------- agreement

NO_ANSWER = "∅"  # a parse failure, its own category for agreement and kappa


def _label(v: str | None) -> str:
    return NO_ANSWER if v is None else v


def cohen_kappa(x: Sequence[str | None], y: Sequence[str | None]) -> float:
    """Cohen's kappa of two labelings of the same items (None = its own category); NaN when
    chance agreement is 1 (both constant and equal) or there are no items."""
    if len(x) != len(y):
        raise ValueError(f"{len(x)} vs {len(y)} labels")
    if not x:
        return float("nan")
    xs, ys = [_label(v) for v in x], [_label(v) for v in y]
    n = len(xs)
    observed = sum(a == b for a, b in zip(xs, ys)) / n
    expected = sum((xs.count(c) / n) * (ys.count(c) / n) for c in set(xs) | set(ys))
    return float("nan") if expected >= 1.0 else (observed - expected) / (1.0 - expected)


@dataclasses.dataclass(frozen=True)
class Agreement:
    """Log-likelihood entry ``loglik`` vs generation entry ``generated`` (same model files): the
    share of items given the same answer (a parse failure is its own answer), pooled with a
    bootstrap interval and per cell, and Cohen's kappa."""

    loglik: str
    generated: str
    mode: str  # the generation entry's mode: "generate" or "reasoning"
    agreement: Estimate
    kappa: float
    cells: dict[Cell, tuple[int, float, float]]  # cell -> (items, agreement, kappa)

    def to_json(self) -> dict[str, Any]:
        return {"loglik": self.loglik, "generated": self.generated, "mode": self.mode,
                "agreement": self.agreement.to_json(), "kappa": None if math.isnan(self.kappa) else self.kappa,
                "cells": [{"dataset": d, "language": l, "items": n, "agreement": a,
                           "kappa": None if math.isnan(k) else k} for (d, l), (n, a, k) in sorted(self.cells.items())]}


def model_identity(results_rows: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, str]]:
    """Per model entry: (identity digest of its model/tokenizer fingerprint fields, scoring
    mode); entries without fingerprints are left out."""
    out = {}
    for r in results_rows:
        fields = (r.get("fingerprint") or {}).get("fields")
        if not isinstance(fields, dict):
            continue
        ident = {k: v for k, v in fields.items() if k.startswith(("model.", "tokenizer."))}
        digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()
        out[r["model"]] = (digest, str(fields.get("scoring.mode", "")))
    return out


def scoring_agreement(results_rows: Sequence[Mapping[str, Any]],
                      predictions: Mapping[str, Sequence[Mapping[str, Any]]], *,
                      resamples: int = 1000, seed: int = 0) -> list[Agreement]:
    """Every (loglik entry, generate/reasoning entry) pair of the same model files."""
    ident = model_identity(results_rows)
    out = []
    for lm, (digest, mode) in sorted(ident.items()):
        if mode != "loglik":
            continue
        for gm, (g_digest, g_mode) in sorted(ident.items()):
            if g_digest != digest or g_mode == "loglik":
                continue
            a = {(r["dataset"], r["language"], r["record_id"]): r["predicted"]
                 for r in unshifted(predictions.get(lm, ())) if _closed(r)}
            b = {(r["dataset"], r["language"], r["record_id"]): r["predicted"]
                 for r in unshifted(predictions.get(gm, ())) if _closed(r)}
            keys = sorted(set(a) & set(b))
            if not keys:
                continue
            cells: dict[Cell, tuple[list, list]] = defaultdict(lambda: ([], []))
            for k in keys:
                cells[k[:2]][0].append(a[k])
                cells[k[:2]][1].append(b[k])
            same = [_label(a[k]) == _label(b[k]) for k in keys]
            low, high = metrics.bootstrap_ci(same, num_resamples=resamples, alpha=ALPHA, seed=seed)
            per_cell = {c: (len(x), float(np.mean([_label(u) == _label(v) for u, v in zip(x, y)])), cohen_kappa(x, y))
                        for c, (x, y) in sorted(cells.items())}
            out.append(Agreement(lm, gm, g_mode, Estimate(float(np.mean(same)), low, high, len(keys), "items"),
                                 cohen_kappa([a[k] for k in keys], [b[k] for k in keys]), per_cell))
    return out
