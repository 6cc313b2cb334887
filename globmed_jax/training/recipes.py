"""What ``python -m globmed_jax.train`` runs: training with held-out evaluation and a report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import ml_collections

from globmed_jax.data import prompts, tasks
from globmed_jax.data.schema import Record
from globmed_jax.decode import Decoder
from globmed_jax.evaluation.heldout_metrics import HeldoutMetrics, evaluate_records
from globmed_jax.models.tokenizer import pad_id
from globmed_jax.training import data as train_data
from globmed_jax.training.loop import train
from globmed_jax.training.report import write_report

log = logging.getLogger(__name__)


def held_out_records(config: ml_collections.ConfigDict) -> list[Record]:
    """Closed-form test records of the mixture, at most ``eval.max_items_per_language`` each."""
    mixture = tasks.get_mixture(train_data.register_mixture(config))
    per_language: dict[str, list[Record]] = {}
    for name in mixture.task_names:
        task = tasks.get_task(name)
        if config.eval.split not in task.splits:
            continue
        for record in task.records(config.eval.split):
            if prompts.answer_choices(record) is not None:
                per_language.setdefault(record.language, []).append(record)
    cap = config.eval.max_items_per_language
    out = []
    for lang in config.data.languages:
        items = per_language.get(lang, [])
        # Interleave tasks so a cap keeps every task family represented.
        items = sorted(items, key=lambda r: (hash_index(r.id), r.id))
        out.extend(items[:cap])
    return out


def hash_index(text: str) -> int:
    import hashlib

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


def make_eval_fn(config: ml_collections.ConfigDict):
    records = held_out_records(config)
    if not records:
        return None, records

    decoders: list[Any] = []  # one Decoder for the run: every evaluation reuses its executables

    def eval_fn(model, tokenizer, step: int) -> HeldoutMetrics:
        if not decoders:
            decoders.append(Decoder(model, pad_id=pad_id(tokenizer)))
        decoder = decoders[0]
        decoder.model = model  # the loop merges a new model (same structure) for every evaluation
        log.info("evaluating %d held-out items at step %d", len(records), step)
        return evaluate_records(decoder, tokenizer, records, mode="loglik", batch_size=config.eval.batch_size,
                                prompt_config=train_data.prompt_config(config))

    return eval_fn, records


def run(config: ml_collections.ConfigDict) -> dict[str, Any]:
    eval_fn, records = make_eval_fn(config) if config.eval.max_items_per_language > 0 else (None, [])
    summary = train(config, eval_fn=eval_fn)
    if summary.get("eval"):
        table, plot = write_report(Path(config.run_dir), summary["eval"], tuple(config.data.languages),
                                   chance_accuracy(records), title=f"Held-out accuracy ({config.data.mixture})")
        print(table.read_text())
        print(f"report: {table}  plot: {plot}")
    return summary
