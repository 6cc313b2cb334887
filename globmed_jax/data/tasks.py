"""Task and mixture registry with SeqIO semantics, without TensorFlow.

A ``Task`` is a named record source (``split -> records`` or a JSONL directory) plus
preprocessors, output feature names and metric names. A ``Mixture`` is a list of (task or
mixture name, rate); a rate is a number or a callable ``Task -> float``. Rates are normalized
into sampling shares exactly as ``seqio.Mixture`` does (a sub-mixture contributes its own shares
scaled by its rate). ``NumExamplesRate`` reproduces ``seqio.mixing_rate_num_examples``:
``clip(scale * n, maximum) ** (1 / temperature)`` (mT5's temperature sampling), optionally
times a per-language multiplier (low-resource upweighting).

Configs refer to mixtures by name; ``get_mixture_or_task(name)`` resolves either. Importing this
module registers the GlobMed-mini tasks (``globmed_mini_<family>_<lang>``) and the mixtures
``globmed_mini`` (proportional), ``globmed_mini_t5`` (temperature 5) and
``globmed_mini_upweighted`` (proportional, low-resource languages x4).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

from globmed_jax.data import families, mini, records_io
from globmed_jax.data.families import get_family
from globmed_jax.data.schema import SPLITS, Record

RecordSource = Callable[[str], Sequence[Record]]
Preprocessor = Callable[[Record], Union[Record, None]]  # None drops the record



# ---------------------------------------------------------------------------------------------
# Sources.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class JsonlSource:
    """Records from normalized JSONL: ``<dir>/<split>.jsonl`` if present, otherwise every
    ``<dir>/**/<split>.jsonl`` (the importers' ``<dataset>/<language>/<split>.jsonl`` layout), in
    sorted path order, filtered by the non-None fields. Files are read once per process."""

    directory: str
    dataset: str | None = None
    language: str | None = None
    task: str | None = None

    def __call__(self, split: str) -> list[Record]:
        return [r for r in _read_jsonl_split(self.directory, split) if self._keep(r)]

    def _keep(self, r: Record) -> bool:
        return ((self.dataset is None or r.dataset == self.dataset)
                and (self.language is None or r.language == self.language)
                and (self.task is None or r.family == self.task))


@functools.lru_cache(maxsize=64)
def _read_jsonl_split(directory: str, split: str) -> tuple[Record, ...]:
    return tuple(records_io.read_split(directory, split))


# ---------------------------------------------------------------------------------------------
# Tasks.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Task:
    """One record source. ``language`` / ``dataset`` / ``family`` are metadata used by rate
    functions (per-language multipliers) and evaluation; ``output_features`` names the model
    features the pipeline emits for it; ``metric_fns`` names metrics the evaluator looks up."""

    name: str
    source: RecordSource
    preprocessors: tuple[Preprocessor, ...] = ()
    output_features: tuple[str, ...] = ("inputs", "targets")
    metric_fns: tuple[str, ...] = ()
    splits: tuple[str, ...] = SPLITS
    language: str | None = None
    dataset: str | None = None
    family: str | None = None

    def records(self, split: str) -> list[Record]:
        """The preprocessed records of ``split`` (cached per task object and split)."""
        if split not in self.splits:
            raise ValueError(f"task {self.name!r} has splits {self.splits}, not {split!r}")
        return list(_task_records(self, split))

    def num_examples(self, split: str = "train") -> int:
        return len(_task_records(self, split))


@functools.lru_cache(maxsize=512)
def _task_records(task: Task, split: str) -> tuple[Record, ...]:
    out = []
    for record in task.source(split):
        for fn in task.preprocessors:
            record = fn(record)
            if record is None:
                break
        if record is not None:
            out.append(record)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Rates.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NumExamplesRate:
    """``clip(scale * n, maximum) ** (1 / temperature) * language_multipliers[task.language]``.

    Same formula and argument meaning as ``seqio.mixing_rate_num_examples`` (maximum applied
    after scaling and before the temperature; a falsy maximum means no cap)."""

    scale: float = 1.0
    maximum: float | None = None
    temperature: float = 1.0
    split: str = "train"
    language_multipliers: tuple[tuple[str, float], ...] = ()

    def base_rate(self, task: Task) -> float:
        rate = self.scale * task.num_examples(self.split)
        if self.maximum:
            rate = min(rate, self.maximum)
        if self.temperature != 1.0:
            rate = rate ** (1.0 / self.temperature)
        return float(rate)

    def multiplier(self, task: Task) -> float:
        return float(dict(self.language_multipliers).get(task.language, 1.0))

    def __call__(self, task: Task) -> float:
        return self.base_rate(task) * self.multiplier(task)


def rate_proportional(split: str = "train") -> NumExamplesRate:
    return NumExamplesRate(split=split)


def rate_capped(maximum: float, scale: float = 1.0, split: str = "train") -> NumExamplesRate:
    return NumExamplesRate(scale=scale, maximum=maximum, split=split)


def rate_temperature(temperature: float, maximum: float | None = None, scale: float = 1.0,
                     split: str = "train") -> NumExamplesRate:
    return NumExamplesRate(scale=scale, maximum=maximum, temperature=temperature, split=split)


def with_language_multipliers(rate: NumExamplesRate, multipliers: Mapping[str, float]) -> NumExamplesRate:
    """``rate`` with per-language multipliers (e.g. ``{"sw": 4.0}`` upweights Swahili tasks x4)."""
    merged = dict(rate.language_multipliers)
    merged.update({k: float(v) for k, v in multipliers.items()})
    return dataclasses.replace(rate, language_multipliers=tuple(sorted(merged.items())))


Rate = Union[float, int, Callable[[Task], float]]


# ---------------------------------------------------------------------------------------------
# Mixtures.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Mixture:
    """``tasks`` pairs a task or mixture name with its rate (``default_rate`` when None)."""

    name: str
    tasks: tuple[tuple[str, Rate | None], ...]
    default_rate: Rate | None = None

    def task_rates(self) -> dict[str, float]:
        """Unnormalized rate per leaf task, SeqIO style: a sub-mixture's tasks get
        ``rate * sub_rate / sub_total``."""
        out: dict[str, float] = {}
        for name, rate in self.tasks:
            rate = self.default_rate if rate is None else rate
            if rate is None:
                raise ValueError(f"mixture {self.name!r}: no rate for {name!r} and no default_rate")
            if name in _MIXTURES:
                sub = _MIXTURES[name]
                sub_rates = sub.task_rates()
                total = sum(sub_rates.values())
                value = _rate_value(rate, None, name)
                for task_name, sub_rate in sub_rates.items():
                    out[task_name] = out.get(task_name, 0.0) + value * sub_rate / total
            else:
                task = get_task(name)
                out[name] = out.get(name, 0.0) + _rate_value(rate, task, name)
        return out

    def shares(self) -> dict[str, float]:
        return normalize(self.task_rates())

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(self.task_rates())


def _rate_value(rate: Rate, task: Task | None, name: str) -> float:
    if callable(rate):
        if task is None:
            raise ValueError(f"a sub-mixture ({name!r}) needs a numeric rate, got {rate!r}")
        value = float(rate(task))
    else:
        value = float(rate)
    if not value >= 0.0:
        raise ValueError(f"rate of {name!r} is {value}; rates must be >= 0")
    return value


def normalize(rates: Mapping[str, float]) -> dict[str, float]:
    total = sum(rates.values())
    if total <= 0:
        raise ValueError(f"rates sum to {total}; at least one must be positive")
    return {k: v / total for k, v in rates.items()}


# ---------------------------------------------------------------------------------------------
# Registries.
# ---------------------------------------------------------------------------------------------

_TASKS: dict[str, Task] = {}
_MIXTURES: dict[str, Mixture] = {}


def add_task(task: Task, overwrite: bool = False) -> Task:
    if not overwrite and (task.name in _TASKS or task.name in _MIXTURES):
        raise ValueError(f"task or mixture {task.name!r} is already registered")
    _TASKS[task.name] = task
    return task


def add_mixture(mixture: Mixture, overwrite: bool = False) -> Mixture:
    if not overwrite and (mixture.name in _TASKS or mixture.name in _MIXTURES):
        raise ValueError(f"task or mixture {mixture.name!r} is already registered")
    # Fail at registration, not at training time, on unknown members or bad constant rates.
    # Callable rates are evaluated lazily: they may need the data (GlobMed-mini is generated on
    # first use, not at import).
    for name, rate in mixture.tasks:
        if name not in _TASKS and name not in _MIXTURES:
            raise KeyError(f"mixture {mixture.name!r}: unknown task or mixture {name!r}")
        rate = mixture.default_rate if rate is None else rate
        if rate is None:
            raise ValueError(f"mixture {mixture.name!r}: no rate for {name!r} and no default_rate")
        if not callable(rate):
            _rate_value(rate, None, name)
    _MIXTURES[mixture.name] = mixture
    return mixture


def remove(name: str) -> None:
    _TASKS.pop(name, None)
    _MIXTURES.pop(name, None)


def get_task(name: str) -> Task:
    if name not in _TASKS:
        raise KeyError(f"unknown task {name!r}; registered: {sorted(_TASKS)}")
    return _TASKS[name]


def get_mixture(name: str) -> Mixture:
    if name not in _MIXTURES:
        raise KeyError(f"unknown mixture {name!r}; registered: {sorted(_MIXTURES)}")
    return _MIXTURES[name]


def get_mixture_or_task(name: str) -> Mixture | Task:
    if name in _MIXTURES:
        return _MIXTURES[name]
    if name in _TASKS:
        return _TASKS[name]
    raise KeyError(f"unknown task or mixture {name!r}; mixtures: {sorted(_MIXTURES)}")


def list_tasks() -> tuple[str, ...]:
    return tuple(sorted(_TASKS))


def list_mixtures() -> tuple[str, ...]:
    return tuple(sorted(_MIXTURES))


def mixture_shares(name: str) -> dict[str, float]:
    """Normalized sampling share per leaf task of a mixture (a task name gives ``{name: 1.0}``)."""
    item = get_mixture_or_task(name)
    if isinstance(item, Task):
        return {item.name: 1.0}
    return item.shares()


def language_shares(name: str) -> dict[str, float]:
    """``mixture_shares`` summed per task language."""
    out: dict[str, float] = {}
    for task_name, share in mixture_shares(name).items():
        lang = get_task(task_name).language
        out[lang] = out.get(lang, 0.0) + share
    return out


# ---------------------------------------------------------------------------------------------
# GlobMed-mini registrations.
# ---------------------------------------------------------------------------------------------

LOW_RESOURCE_MULTIPLIER = 4.0


def mini_task_name(family: str, language: str, prefix: str = mini.DATASET_PREFIX) -> str:
    return f"{prefix}_{family}_{language}"


def register_globmed_mini(config: mini.MiniConfig = mini.MiniConfig(), prefix: str = mini.DATASET_PREFIX,
                          overwrite: bool = False) -> tuple[str, ...]:
    """Registers one task per (dataset, language) of GlobMed-mini and the mixtures
    ``<prefix>`` (proportional), ``<prefix>_t5`` (temperature 5) and ``<prefix>_upweighted``
    (proportional, low-resource languages x LOW_RESOURCE_MULTIPLIER). Returns the task names."""
    names = []
    for family in config.families:
        for lang in config.languages:
            task = Task(
                name=mini_task_name(family, lang, prefix),
                source=mini.source(family, lang, config),
                metric_fns=get_family(family).metrics,
                splits=mini.MINI_SPLITS,
                language=lang,
                dataset=mini.dataset_name(family),
                family=family,
            )
            add_task(task, overwrite=overwrite)
            names.append(task.name)
    low = {lang: LOW_RESOURCE_MULTIPLIER for lang in config.low_resource_languages()}
    for suffix, rate in (("", rate_proportional()), ("_t5", rate_temperature(5.0)),
                         ("_upweighted", with_language_multipliers(rate_proportional(), low))):
        add_mixture(Mixture(prefix + suffix, tuple((n, rate) for n in names)), overwrite=overwrite)
    return tuple(names)


def register_jsonl_tasks(directory: str | os.PathLike, datasets: Iterable[tuple[str, str, str]],
                         prefix: str = "", overwrite: bool = False) -> tuple[str, ...]:
    """Registers ``<prefix><dataset>_<language>`` tasks over normalized JSONL for each
    ``(dataset, language, family)``; returns the task names."""
    names = []
    for dataset, language, family in datasets:
        task = Task(
            name=f"{prefix}{dataset}_{language}",
            source=JsonlSource(str(directory), dataset=dataset, language=language),
            metric_fns=families.FAMILIES[family].metrics if family in families.FAMILIES else (),
            language=language, dataset=dataset, family=family,
        )
        add_task(task, overwrite=overwrite)
        names.append(task.name)
    return tuple(names)


def describe(name: str) -> dict[str, Any]:
    """Per task: language, train examples and share (for logs and reports)."""
    shares = mixture_shares(name)
    return {t: {"language": get_task(t).language, "num_train": get_task(t).num_examples("train"), "share": s}
            for t, s in shares.items()}


register_globmed_mini()
