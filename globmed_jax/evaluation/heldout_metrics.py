"""Held-out metrics of a set of predictions, keyed by language and by (family, language).

Training logs and the run report read these; strings such as ``accuracy/<family>/<lang>`` exist
only in ``flat()``, for JSON lines and TensorBoard.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from globmed_jax.data.families import get_family
from globmed_jax.data.schema import Record
from globmed_jax.decode import Decoder
from globmed_jax.evaluation.scoring import Prediction, is_correct, predict



def _closed(record: Record) -> bool:
    """Scored by label match (accuracy); open families get chrF / ROUGE-L instead."""
    return get_family(record.family).closed


@dataclasses.dataclass(frozen=True)
class HeldoutMetrics:
    """Accuracy over closed-form records (None without any), overall, per language and per
    (family, language); parse failures over all records; chrF and ROUGE-L (0-100) over open_qa."""
    num_examples: int
    parse_failure_rate: float
    accuracy: float | None = None
    by_language: dict[str, float] = dataclasses.field(default_factory=dict)
    by_family_language: dict[tuple[str, str], float] = dataclasses.field(default_factory=dict)
    chrf: float | None = None
    rouge_l: float | None = None

    def families(self) -> list[str]:
        """Families with an accuracy, in first-seen order."""
        return list(dict.fromkeys(family for family, _ in self.by_family_language))

    def flat(self) -> dict[str, float]:
        """The string-keyed form written to metrics.jsonl, summary.json and TensorBoard."""
        out: dict[str, float] = {"num_examples": float(self.num_examples)}
        if self.accuracy is not None:
            out["accuracy"] = self.accuracy
        out.update({f"accuracy_{lang}": v for lang, v in self.by_language.items()})
        out.update({f"accuracy/{family}/{lang}": v for (family, lang), v in self.by_family_language.items()})
        out["parse_failure_rate"] = self.parse_failure_rate
        for name in ("chrf", "rouge_l"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


def summarize(records: Sequence[Record], predictions: Sequence[Prediction]) -> HeldoutMetrics:
    """The metrics of ``predictions[i]`` for ``records[i]``."""
    if len(records) != len(predictions):
        raise ValueError(f"{len(records)} records but {len(predictions)} predictions")
    parse_failures = float(np.mean([p.parse_failed for p in predictions])) if predictions else 0.0
    fields: dict[str, Any] = {"num_examples": len(records), "parse_failure_rate": parse_failures}
    closed = [(r, p) for r, p in zip(records, predictions) if _closed(r)]
    if closed:
        correct = [is_correct(r, p) for r, p in closed]
        by_lang: dict[str, list[bool]] = defaultdict(list)
        by_family_lang: dict[tuple[str, str], list[bool]] = defaultdict(list)
        for (r, _), c in zip(closed, correct):
            by_lang[r.language].append(c)
            by_family_lang[(r.family, r.language)].append(c)
        fields["accuracy"] = float(np.mean(correct))
        fields["by_language"] = {lang: float(np.mean(by_lang[lang])) for lang in sorted(by_lang)}
        fields["by_family_language"] = {key: float(np.mean(cs)) for key, cs in sorted(by_family_lang.items())}
    open_pairs = [(r, p) for r, p in zip(records, predictions) if not _closed(r)]
    if open_pairs:
        from globmed_jax.evaluation import metrics

        hyps = [p.predicted or "" for _, p in open_pairs]
        refs = [r.answer for r, _ in open_pairs]
        fields["chrf"] = metrics.chrf(hyps, refs)
        fields["rouge_l"] = metrics.rouge_l(hyps, refs)
    return HeldoutMetrics(**fields)


def evaluate_records(decoder: Decoder, tokenizer: Any, records: Sequence[Record], *, mode: str = "loglik",
                     **predict_kwargs: Any) -> HeldoutMetrics:
    """``summarize(records, predict(...))`` with a local model's ``Decoder`` (training's held-out
    evaluation)."""
    records = list(records)
    return summarize(records, predict(decoder, tokenizer, records, mode=mode, **predict_kwargs))
