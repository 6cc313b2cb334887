"""Bridge to SeqIO: registers our tasks and mixtures as ``seqio.Task`` / ``seqio.Mixture``.

The ONLY module that imports seqio (and with it TensorFlow, ~3 s and ~1 GB): the training path
uses ``globmed_jax.data.tasks`` and ``pipeline`` and must not import this.

Each seqio task reads the same records as ours through a ``seqio.FunctionDataSource`` (with
``num_input_examples`` so seqio's own ``mixing_rate_num_examples`` works) and yields text
features: ``inputs`` = the user turn of ``prompts.user_message``, ``targets`` =
``prompts.answer_target``, plus the record's id / source_id / dataset / language / task. The
vocabulary is a ``seqio.PassThroughVocabulary``: tokenization with the chat template stays in
the grain pipeline. Mixture rates are rebuilt from ours: a ``NumExamplesRate`` becomes
``seqio.mixing_rate_num_examples`` with the same arguments times the same language multiplier,
so seqio computes the rates itself and agreement with ``tasks.mixture_shares`` is a real check.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import seqio
import tensorflow as tf

from globmed_jax.data import prompts, tasks
from globmed_jax.data.prompts import PromptConfig

META_KEYS = ("id", "source_id", "dataset", "language", "family")


def output_features() -> dict[str, seqio.Feature]:
    vocab = seqio.PassThroughVocabulary(size=0)
    return {k: seqio.Feature(vocab, add_eos=False, dtype=tf.string, rank=0) for k in ("inputs", "targets")}


def _examples(task_name: str, split: str, prompt_config: PromptConfig) -> dict[str, list[str]]:
    columns: dict[str, list[str]] = {k: [] for k in ("inputs", "targets", *META_KEYS)}
    for r in tasks.get_task(task_name).records(split):
        columns["inputs"].append(prompts.user_message(r, prompt_config))
        columns["targets"].append(prompts.answer_target(r, prompt_config))
        for k in META_KEYS:
            columns[k].append(getattr(r, k))
    return columns


def _dataset_fn(split: str, shuffle_files: bool, seed: int | None = None, *, task_name: str,
                prompt_config: PromptConfig) -> tf.data.Dataset:
    del shuffle_files, seed  # one in-memory "file"; seqio shuffles examples itself
    columns = _examples(task_name, split, prompt_config)
    return tf.data.Dataset.from_tensor_slices({k: tf.constant(v, tf.string) for k, v in columns.items()})


def register_task(name: str, prompt_config: PromptConfig = PromptConfig()) -> seqio.Task:
    """Registers our task ``name`` in ``seqio.TaskRegistry`` (idempotent); returns it."""
    if name in seqio.TaskRegistry.names():
        return seqio.TaskRegistry.get(name)
    task = tasks.get_task(name)
    fn = functools.partial(_dataset_fn, task_name=name, prompt_config=prompt_config)
    source = seqio.FunctionDataSource(
        fn, splits=task.splits, num_input_examples={s: task.num_examples(s) for s in task.splits})
    return seqio.TaskRegistry.add(name, source=source, preprocessors=[], output_features=output_features(),
                                  metric_fns=[])


def seqio_rate(rate: tasks.Rate) -> float | Callable[[seqio.Task], float]:
    """Our rate as a seqio rate (computed by seqio where seqio has the function)."""
    if isinstance(rate, tasks.NumExamplesRate):
        multipliers = dict(rate.language_multipliers)

        def fn(seqio_task: seqio.Task) -> float:
            base = seqio.mixing_rate_num_examples(
                seqio_task, maximum=rate.maximum, scale=rate.scale, temperature=rate.temperature, split=rate.split)
            return base * multipliers.get(tasks.get_task(seqio_task.name).language, 1.0)

        return fn
    if callable(rate):
        return lambda seqio_task: float(rate(tasks.get_task(seqio_task.name)))
    return float(rate)


def register_mixture(name: str, prompt_config: PromptConfig = PromptConfig()) -> seqio.Mixture:
    """Registers mixture ``name``, its tasks and sub-mixtures in seqio (idempotent); returns it."""
    if name in seqio.MixtureRegistry.names():
        return seqio.MixtureRegistry.get(name)
    mixture = tasks.get_mixture(name)
    members: list[tuple[str, Any]] = []
    for member, rate in mixture.tasks:
        rate = mixture.default_rate if rate is None else rate
        if member in tasks.list_mixtures():
            register_mixture(member, prompt_config)
        else:
            register_task(member, prompt_config)
        members.append((member, seqio_rate(rate)))
    return seqio.MixtureRegistry.add(name, members)


def mixture_shares(name: str) -> dict[str, float]:
    """Normalized rates as seqio computes them for the registered mixture ``name``."""
    mixture = seqio.get_mixture_or_task(name)
    rates = {t.name: mixture.get_rate(t) for t in mixture.tasks}
    total = sum(rates.values())
    return {k: v / total for k, v in rates.items()}
