"""Bridge to SeqIO: registers our tasks and mixtures as ``seqio.Task`` / ``seqio.Mixture``.

The ONLY module that imports seqio (and with it TensorFlow, ~3 s and ~1 GB): the training path
uses ``globmed_jax.data.tasks`` and ``pipeline`` and must not import this. Our mixtures are
values; registering one puts it and its members in seqio's global registries under their names.

Each seqio task reads the same records as ours through a ``seqio.FunctionDataSource`` (with
``num_input_examples`` so seqio's own ``mixing_rate_num_examples`` works) and yields text
features: ``inputs`` = the user turn of ``prompts.user_message``, ``targets`` =
``prompts.answer_target``, plus the record's id / source_id / dataset / language / family. The
vocabulary is a ``seqio.PassThroughVocabulary``: tokenization with the chat template stays in
the grain pipeline. Mixture rates are rebuilt from ours: a ``NumExamplesRate`` becomes
``seqio.mixing_rate_num_examples`` with the same arguments times the same language multiplier,
so seqio computes the rates itself and agreement with ``Mixture.shares`` is a real check.
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


def _examples(task: tasks.Task, split: str, prompt_config: PromptConfig) -> dict[str, list[str]]:
    columns: dict[str, list[str]] = {k: [] for k in ("inputs", "targets", *META_KEYS)}
    for r in task.records(split):
        columns["inputs"].append(prompts.user_message(r, prompt_config))
        columns["targets"].append(prompts.answer_target(r, prompt_config))
        for k in META_KEYS:
            columns[k].append(getattr(r, k))
    return columns


def _dataset_fn(split: str, shuffle_files: bool, seed: int | None = None, *, task: tasks.Task,
                prompt_config: PromptConfig) -> tf.data.Dataset:
    del shuffle_files, seed  # one in-memory "file"; seqio shuffles examples itself
    columns = _examples(task, split, prompt_config)
    return tf.data.Dataset.from_tensor_slices({k: tf.constant(v, tf.string) for k, v in columns.items()})


# What this module put in seqio's (global) registries, by name: registering a different value
# under a name already taken is an error, not a silent reuse of the old one.
_REGISTERED: dict[str, tuple[Any, PromptConfig]] = {}


def _already_registered(name: str, value: Any, prompt_config: PromptConfig, names: Any) -> bool:
    if name not in names:
        return False
    if _REGISTERED.get(name) != (value, prompt_config):
        raise ValueError(f"seqio already has a task or mixture {name!r} with other contents; "
                         f"remove it from seqio's registry first")
    return True


def register_task(task: tasks.Task, prompt_config: PromptConfig = PromptConfig()) -> seqio.Task:
    """Registers ``task`` in ``seqio.TaskRegistry`` under its name (idempotent); returns it."""
    if _already_registered(task.name, task, prompt_config, seqio.TaskRegistry.names()):
        return seqio.TaskRegistry.get(task.name)
    fn = functools.partial(_dataset_fn, task=task, prompt_config=prompt_config)
    source = seqio.FunctionDataSource(
        fn, splits=task.splits, num_input_examples={s: task.num_examples(s) for s in task.splits})
    registered = seqio.TaskRegistry.add(task.name, source=source, preprocessors=[],
                                        output_features=output_features(), metric_fns=[])
    _REGISTERED[task.name] = (task, prompt_config)
    return registered


def seqio_rate(rate: tasks.Rate, task: tasks.Task | None) -> float | Callable[[seqio.Task], float]:
    """Our rate of ``task`` (None for a sub-mixture) as a seqio rate, computed by seqio where
    seqio has the function."""
    if isinstance(rate, tasks.NumExamplesRate):
        multiplier = rate.multiplier(task)

        def fn(seqio_task: seqio.Task) -> float:
            base = seqio.mixing_rate_num_examples(
                seqio_task, maximum=rate.maximum, scale=rate.scale, temperature=rate.temperature, split=rate.split)
            return base * multiplier

        return fn
    if callable(rate):
        return lambda seqio_task: float(rate(task))
    return float(rate)


def register_mixture(mixture: tasks.Mixture, prompt_config: PromptConfig = PromptConfig()) -> seqio.Mixture:
    """Registers ``mixture``, its tasks and sub-mixtures in seqio under their names (idempotent);
    returns the seqio mixture."""
    if _already_registered(mixture.name, mixture, prompt_config, seqio.MixtureRegistry.names()):
        return seqio.MixtureRegistry.get(mixture.name)
    members: list[tuple[str, Any]] = []
    for member, rate in mixture.members:
        if isinstance(member, tasks.Mixture):
            register_mixture(member, prompt_config)
            members.append((member.name, seqio_rate(rate, None)))
        else:
            register_task(member, prompt_config)
            members.append((member.name, seqio_rate(rate, member)))
    registered = seqio.MixtureRegistry.add(mixture.name, members)
    _REGISTERED[mixture.name] = (mixture, prompt_config)
    return registered


def mixture_shares(name: str) -> dict[str, float]:
    """Normalized rates as seqio computes them for the registered mixture ``name``."""
    mixture = seqio.get_mixture_or_task(name)
    rates = {t.name: mixture.get_rate(t) for t in mixture.tasks}
    total = sum(rates.values())
    return {k: v / total for k, v in rates.items()}
