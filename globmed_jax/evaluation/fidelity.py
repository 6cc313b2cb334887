"""Language fidelity: is a generated answer written in the language it was asked in?

Read from predictions rows: open-QA answers (any mode) and every answer of a reasoning-mode cell
(the final answer after the think block; the reasoning itself is measured separately). Closed
answers of generate mode are left out -- a letter or ``yes`` has no language.

Each text goes through the offline identifier translation QC uses (``data.langid``,
lingua): ``pass`` (the asked language, or one it cannot be told from on short text),
``fail`` (another language: ``drift`` names the most common one), ``too_short`` (fewer than
``min_chars`` letters: single-term answers), ``undetectable`` (a language lingua does not know,
e.g. Amharic). Per (model, language) the share is ``pass / (pass + fail)`` with a 95% bootstrap
interval; the other counts are reported next to it. A reasoning-mode item whose think block
never closed has no answer (``no_answer``).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from globmed_jax.data.families import get_family
from globmed_jax.evaluation import extract, metrics, reasoning
from globmed_jax.evaluation.position_bias import unshifted

__all__ = ["Fidelity", "fidelity", "cell_modes", "DEFAULT_MIN_CHARS"]

DEFAULT_MIN_CHARS = 20  # as translation QC (data_pipelines.translate.qc.QCConfig.langid_min_chars)


@dataclasses.dataclass
class Fidelity:
    """One (model, language, part) tally; ``part`` is "answer" or "reasoning"."""

    passed: int = 0
    failed: int = 0
    too_short: int = 0
    undetectable: int = 0
    no_answer: int = 0
    drift: Counter = dataclasses.field(default_factory=Counter)
    share: tuple[float, float, float] = (float("nan"), float("nan"), float("nan"))

    @property
    def judged(self) -> int:
        return self.passed + self.failed

    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("passed", "failed", "too_short", "undetectable", "no_answer")}
        d["drift"] = dict(self.drift.most_common())
        d["share"] = [None if math.isnan(x) else x for x in self.share]
        return d


def cell_modes(results_rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str], str]:
    """(model, dataset, language) -> scoring mode, from the rows' fingerprints (or settings)."""
    out = {}
    for r in results_rows:
        fields = (r.get("fingerprint") or {}).get("fields") or {}
        out[(r["model"], r["dataset"], r["language"])] = str(fields.get("scoring.mode")
                                                          or (r.get("setting") or {}).get("mode", ""))
    return out


def _parts(row: Mapping[str, Any], mode: str) -> dict[str, str | None] | None:
    """The texts to identify: {"answer": ..., "reasoning": ...} (None: no answer), or None when
    the row is not a generated answer that has a language."""
    if row.get("text") is None:
        return None
    family = row["family"] if "family" in row else row["task"]
    if mode == reasoning.MODE:
        s = reasoning.split(row["text"])
        return {"answer": None if s.truncated else s.answer, "reasoning": s.reasoning or None}
    if get_family(family).closed:
        return None
    return {"answer": extract.clean_text(row["text"])}


def fidelity(results_rows: Sequence[Mapping[str, Any]], predictions: Mapping[str, Sequence[Mapping[str, Any]]],
             identifier: Any = None, *, min_chars: int = DEFAULT_MIN_CHARS, resamples: int = 1000,
             seed: int = 0) -> dict[tuple[str, str, str], Fidelity]:
    """``{(model, language, part): Fidelity}`` for every model with generated answers.

    ``identifier``: anything with ``status(text, language) -> (status, detected)`` (default: a
    ``data.langid.LanguageIdentifier(min_chars=min_chars)``)."""
    modes = cell_modes(results_rows)
    tallies: dict[tuple[str, str, str], Fidelity] = defaultdict(Fidelity)
    outcomes: dict[tuple[str, str, str], list[bool]] = defaultdict(list)
    for model, rows in predictions.items():
        for row in unshifted(rows):
            parts = _parts(row, modes.get((model, row["dataset"], row["language"]), ""))
            for part, text in (parts or {}).items():
                key = (model, row["language"], part)
                if text is None or not text.strip():
                    if part == "answer":  # no reasoning is not counted; no answer is
                        tallies[key].no_answer += 1
                    continue
                t = tallies[key]
                if identifier is None:  # loaded only when there is something to identify
                    from globmed_jax.data.langid import LanguageIdentifier

                    identifier = LanguageIdentifier(min_chars=min_chars)
                status, detected = identifier.status(text, row["language"])
                if status == "pass":
                    t.passed += 1
                elif status == "fail":
                    t.failed += 1
                    t.drift[detected or "unknown"] += 1
                elif status == "too_short":
                    t.too_short += 1
                else:
                    t.undetectable += 1
                if status in ("pass", "fail"):
                    outcomes[key].append(status == "pass")
    for key, t in tallies.items():
        judged = outcomes.get(key, [])
        if judged:
            low, high = metrics.bootstrap_ci(judged, num_resamples=resamples, seed=seed)
            t.share = (float(np.mean(judged)), low, high)
    return dict(tallies)
