"""What ``python -m globmed_jax.train`` runs: training with held-out evaluation and a report."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Sequence

import ml_collections

from globmed_jax.data import prompts
from globmed_jax.data.tasks import Mixture
from globmed_jax.data.schema import Record
from globmed_jax.decode import Decoder
from globmed_jax.evaluation.heldout_metrics import HeldoutMetrics, evaluate_records
from globmed_jax.models.tokenizer import pad_id
from globmed_jax.training import data as train_data
from globmed_jax.training.config import EvalSection, TrainingConfig, typed_config
from globmed_jax.training.loop import train
from globmed_jax.training.report import write_report

log = logging.getLogger(__name__)


def held_out_records(mixture: Mixture, evaluation: EvalSection, languages: Sequence[str]) -> list[Record]:
    """Closed-form records of the mixture's ``evaluation.split``, at most
    ``evaluation.max_items_per_language`` per language of ``languages``."""
    per_language: dict[str, list[Record]] = {}
    for task in mixture.tasks().values():
        if evaluation.split not in task.splits:
            continue
        for record in task.records(evaluation.split):
            if prompts.answer_choices(record) is not None:
                per_language.setdefault(record.language, []).append(record)
    cap = evaluation.max_items_per_language
    out = []
    for lang in languages:
        items = per_language.get(lang, [])
        # Interleave tasks so a cap keeps every task family represented.
        items = sorted(items, key=lambda r: (hash_index(r.id), r.id))
        out.extend(items[:cap])
    return out


def hash_index(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:4], "big")


def chance_accuracy(records: list[Record]) -> dict[str | tuple[str, str], float]:
    """Expected accuracy of uniform guessing, keyed by language and by (family, language), as
    ``HeldoutMetrics`` keys its accuracies."""
    sums: dict[str | tuple[str, str], list[float]] = {}
    for r in records:
        p = 1.0 / len(prompts.answer_choices(r))
        sums.setdefault(r.language, []).append(p)
        sums.setdefault((r.family, r.language), []).append(p)
    return {key: sum(v) / len(v) for key, v in sums.items()}


def make_eval_fn(typed: TrainingConfig, mixture: Mixture):
    """``(eval_fn, records)``: held-out evaluation of the mixture's test records in the prompt
    format training uses, or ``(None, [])`` when there are none."""
    records = held_out_records(mixture, typed.eval, typed.data.languages)
    if not records:
        return None, records

    decoders: list[Any] = []  # one Decoder for the run: every evaluation reuses its executables

    def eval_fn(model, tokenizer, step: int) -> HeldoutMetrics:
        if not decoders:
            decoders.append(Decoder(model, pad_id=pad_id(tokenizer)))
        decoder = decoders[0]
        decoder.model = model  # the loop merges a new model (same structure) for every evaluation
        log.info("evaluating %d held-out items at step %d", len(records), step)
        return evaluate_records(decoder, tokenizer, records, mode="loglik", batch_size=typed.eval.batch_size,
                                prompt_config=train_data.prompt_config(typed.data))

    return eval_fn, records


def run(config: ml_collections.ConfigDict) -> dict[str, Any]:
    typed = typed_config(config)
    mixture = train_data.resolve_mixture(typed.data, typed.seed)
    if typed.data.objective == "lm":
        # Plain next-token pretraining (e.g. the demo's base model on base_corpus): the mixture
        # has no closed-form test items, so there is no held-out evaluation.
        return train(config, mixture=mixture)
    eval_fn, records = make_eval_fn(typed, mixture) if typed.eval.max_items_per_language > 0 else (None, [])
    summary = train(config, eval_fn=eval_fn, mixture=mixture)
    if summary.get("eval"):
        table, plot = write_report(Path(config.run_dir), summary["eval"], tuple(config.data.languages),
                                   chance_accuracy(records), title=f"Held-out accuracy ({config.data.mixture})")
        print(table.read_text())
        print(f"report: {table}  plot: {plot}")
    return summary
