"""Tasks and mixtures as values, with SeqIO's mixing semantics and without TensorFlow.

A ``Task`` is a record source (``split -> records``, e.g. a JSONL directory) plus preprocessors,
metadata and metric names. A ``Mixture`` is a value: ``(member, rate)`` pairs whose members are
``Task`` or ``Mixture`` objects (not names), checked when it is built. Rates are normalized into
sampling shares exactly as ``seqio.Mixture`` does (a sub-mixture contributes its own shares scaled
by its rate). ``NumExamplesRate`` reproduces ``seqio.mixing_rate_num_examples``:
``clip(scale * n, maximum) ** (1 / temperature)`` (mT5's temperature sampling), optionally times a
per-language multiplier (low-resource upweighting).

Nothing registers at import. A config names a mixture; ``training.data.resolve_mixture`` turns the
name into a value once, with ``named_mixture`` (GlobMed-mini variants, plain functions in
``NAMED_MIXTURES``), ``jsonl_mixture`` (a normalized JSONL tree, read into memory in every
process: for small data) or ``arrayrecord_mixture`` (the versioned TFDS ArrayRecord build of
``data_pipelines.build --tfds``, read by index through a random-access source: each process and
grain worker decodes only the records of its own shard), and hands the value to the pipeline, the
held-out evaluation and the seqio bridge.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import pathlib
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

from globmed_jax.data import base_corpus as corpus
from globmed_jax.data import families, mini, records_io
from globmed_jax.data.families import get_family
from globmed_jax.data.schema import OPTION_LETTERS, SPLITS, Record

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
    family: str | None = None

    def __call__(self, split: str) -> list[Record]:
        return [r for r in _read_jsonl_split(self.directory, split) if self._keep(r)]

    def _keep(self, r: Record) -> bool:
        return ((self.dataset is None or r.dataset == self.dataset)
                and (self.language is None or r.language == self.language)
                and (self.family is None or r.family == self.family))


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
        """Records of ``split``; read from the source's metadata (no record read) when the
        source can count (``ArrayRecordSource``) and no preprocessor may drop records."""
        counter = getattr(self.source, "num_examples", None)
        if counter is not None and not self.preprocessors:
            return int(counter(split))
        return len(_task_records(self, split))


def pipeline_records(task: Task, split: str) -> Sequence[Record]:
    """What the input pipeline indexes for ``task``: the source's random-access sequence
    (``random_access(split)``: decoded on ``__getitem__``, picklable into grain workers) when it
    has one and the task has no preprocessors, else the task's records in memory."""
    if split not in task.splits:
        raise ValueError(f"task {task.name!r} has splits {task.splits}, not {split!r}")
    random_access = getattr(task.source, "random_access", None)
    if random_access is not None and not task.preprocessors:
        return random_access(split)
    return task.records(split)


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
    """A named value: ``members`` pairs a ``Task`` or sub-``Mixture`` with its rate.

    Built from objects, so an unknown member cannot exist; the constructor rejects members of
    the wrong type, negative or non-finite constant rates, and two different tasks under one
    name (the same task reached twice, e.g. directly and through a sub-mixture, adds its rates
    as in SeqIO). Callable rates are evaluated on use: they may need the data."""

    name: str
    members: tuple[tuple[Union[Task, "Mixture"], Rate], ...]

    def __post_init__(self):
        object.__setattr__(self, "members", tuple((m, r) for m, r in self.members))
        if not self.members:
            raise ValueError(f"mixture {self.name!r} has no members")
        for member, rate in self.members:
            if not isinstance(member, (Task, Mixture)):
                raise TypeError(f"mixture {self.name!r}: member {member!r} is not a Task or Mixture")
            if isinstance(member, Mixture) and callable(rate):
                raise ValueError(f"mixture {self.name!r}: sub-mixture {member.name!r} needs a numeric rate")
            if not callable(rate):
                _rate_value(rate, None, member.name)
        self.tasks()  # name clashes fail here

    @classmethod
    def of(cls, name: str, members: Iterable[Task], rate: Rate) -> "Mixture":
        """A mixture of ``members``, all at the same ``rate``."""
        return cls(name, tuple((t, rate) for t in members))

    def tasks(self) -> dict[str, Task]:
        """Leaf tasks by name, in member order (sub-mixtures expanded)."""
        out: dict[str, Task] = {}
        for member, _ in self.members:
            for task in (member.tasks().values() if isinstance(member, Mixture) else (member,)):
                if out.setdefault(task.name, task) != task:
                    raise ValueError(f"mixture {self.name!r}: two different tasks are named {task.name!r}")
        return out

    def task(self, name: str) -> Task:
        found = self.tasks()
        if name not in found:
            raise KeyError(f"mixture {self.name!r} has no task {name!r}; it has {sorted(found)}")
        return found[name]

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(self.tasks())

    def task_rates(self) -> dict[str, float]:
        """Unnormalized rate per leaf task, SeqIO style: a sub-mixture's tasks get
        ``rate * sub_rate / sub_total``."""
        out: dict[str, float] = {}
        for member, rate in self.members:
            if isinstance(member, Mixture):
                sub_rates = member.task_rates()
                total = sum(sub_rates.values())
                value = _rate_value(rate, None, member.name)
                for task_name, sub_rate in sub_rates.items():
                    out[task_name] = out.get(task_name, 0.0) + value * sub_rate / total
            else:
                out[member.name] = out.get(member.name, 0.0) + _rate_value(rate, member, member.name)
        return out

    def shares(self) -> dict[str, float]:
        """Normalized sampling share per leaf task."""
        return normalize(self.task_rates())

    def language_shares(self) -> dict[str, float]:
        """``shares`` summed per task language."""
        tasks = self.tasks()
        out: dict[str, float] = {}
        for name, share in self.shares().items():
            lang = tasks[name].language
            out[lang] = out.get(lang, 0.0) + share
        return out

    def describe(self) -> dict[str, dict[str, Any]]:
        """Per task: language, train examples and share (for logs and reports)."""
        tasks = self.tasks()
        return {name: {"language": tasks[name].language, "num_train": tasks[name].num_examples("train"),
                       "share": share} for name, share in self.shares().items()}


def _rate_value(rate: Rate, task: Task | None, name: str) -> float:
    if callable(rate):
        value = float(rate(task))
    elif isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise TypeError(f"rate of {name!r} must be a number or a function of the task, got {rate!r}")
    else:
        value = float(rate)
    if not (value >= 0.0 and math.isfinite(value)):
        raise ValueError(f"rate of {name!r} is {value}; rates must be finite and >= 0")
    return value


def normalize(rates: Mapping[str, float]) -> dict[str, float]:
    total = sum(rates.values())
    if total <= 0:
        raise ValueError(f"rates sum to {total}; at least one must be positive")
    return {k: v / total for k, v in rates.items()}


def single_task(task: Task) -> Mixture:
    """A mixture of one task (what a config naming a task trains on)."""
    return Mixture(task.name, ((task, 1.0),))


# ---------------------------------------------------------------------------------------------
# GlobMed-mini: tasks and named mixtures (plain functions returning values).
# ---------------------------------------------------------------------------------------------

LOW_RESOURCE_MULTIPLIER = 4.0


def mini_task_name(family: str, language: str, prefix: str = mini.DATASET_PREFIX) -> str:
    return f"{prefix}_{family}_{language}"


def globmed_mini_tasks(config: mini.MiniConfig = mini.MiniConfig(),
                       prefix: str = mini.DATASET_PREFIX) -> tuple[Task, ...]:
    """One task per (family, language) of GlobMed-mini, named ``<prefix>_<family>_<lang>``."""
    return tuple(
        Task(name=mini_task_name(family, lang, prefix), source=mini.source(family, lang, config),
             metric_fns=get_family(family).metrics, splits=mini.MINI_SPLITS, language=lang,
             dataset=mini.dataset_name(family), family=family)
        for family in config.families for lang in config.languages)


def globmed_mini(config: mini.MiniConfig = mini.MiniConfig()) -> Mixture:
    """GlobMed-mini, proportional to example counts."""
    return Mixture.of("globmed_mini", globmed_mini_tasks(config), rate_proportional())


def globmed_mini_t5(config: mini.MiniConfig = mini.MiniConfig()) -> Mixture:
    """GlobMed-mini with temperature-5 sampling (mT5)."""
    return Mixture.of("globmed_mini_t5", globmed_mini_tasks(config), rate_temperature(5.0))


def globmed_mini_t3(config: mini.MiniConfig = mini.MiniConfig()) -> Mixture:
    """GlobMed-mini with temperature-3 sampling (the GlobMed recipes' T)."""
    return Mixture.of("globmed_mini_t3", globmed_mini_tasks(config), rate_temperature(3.0))


def globmed_mini_upweighted(config: mini.MiniConfig = mini.MiniConfig()) -> Mixture:
    """GlobMed-mini, proportional, low-resource languages x ``LOW_RESOURCE_MULTIPLIER``."""
    low = {lang: LOW_RESOURCE_MULTIPLIER for lang in config.low_resource_languages()}
    return Mixture.of("globmed_mini_upweighted", globmed_mini_tasks(config),
                      with_language_multipliers(rate_proportional(), low))


def base_corpus_tasks(config: corpus.BaseCorpusConfig = corpus.BaseCorpusConfig()) -> tuple[Task, ...]:
    """One plain-text task per (kind, language) of the synthetic base corpus
    (``data.base_corpus``), named ``base_corpus_<kind>_<lang>``; its records are
    ``base_corpus.Document`` objects (train split only), read by the pipeline's "lm" objective."""
    docs = corpus.documents(config)
    present = {(d.kind, d.language) for d in docs}
    return tuple(
        Task(name=f"{corpus.DATASET}_{kind}_{lang}", source=corpus.CorpusSource(kind, lang, config),
             output_features=("targets",), splits=("train",), language=lang, dataset=corpus.DATASET)
        for lang in config.languages for kind in corpus.KINDS if (kind, lang) in present)


def base_corpus(config: mini.MiniConfig = mini.MiniConfig()) -> Mixture:
    """The synthetic base pretraining corpus for GlobMed-mini's languages, proportional to the
    number of documents (so the corpus's own language imbalance is what the model sees)."""
    cfg = corpus.BaseCorpusConfig(seed=config.seed, languages=config.languages, low_resource=config.low_resource)
    return Mixture.of("base_corpus", base_corpus_tasks(cfg), rate_proportional())


NAMED_MIXTURES: Mapping[str, Callable[[mini.MiniConfig], Mixture]] = {
    "globmed_mini": globmed_mini,
    "globmed_mini_t5": globmed_mini_t5,
    "globmed_mini_upweighted": globmed_mini_upweighted,
}

# The demo's and the ablation's mixtures (``make demo`` / ``make reproduce``), looked up by
# ``named_mixture`` after ``NAMED_MIXTURES``: the T=3 weighting of the GlobMed recipes and the
# plain-text base corpus (train it with ``data.objective="lm"``; its records are Documents, so it
# is not a seqio-style SFT mixture and stays out of ``NAMED_MIXTURES``).
DEMO_MIXTURES: Mapping[str, Callable[[mini.MiniConfig], Mixture]] = {
    "globmed_mini_t3": globmed_mini_t3,
    "base_corpus": base_corpus,
}


def named_mixture(name: str, config: mini.MiniConfig = mini.MiniConfig()) -> Mixture:
    """A mixture of ``NAMED_MIXTURES`` or ``DEMO_MIXTURES``, or a single GlobMed-mini task
    (``globmed_mini_mcqa_en``)."""
    if name in NAMED_MIXTURES:
        return NAMED_MIXTURES[name](config)
    if name in DEMO_MIXTURES:
        return DEMO_MIXTURES[name](config)
    for task in globmed_mini_tasks(config):
        if task.name == name:
            return single_task(task)
    raise KeyError(f"unknown mixture {name!r}; named mixtures: {sorted(NAMED_MIXTURES) + sorted(DEMO_MIXTURES)} "
                   f"(or a GlobMed-mini task such as {mini_task_name('mcqa', 'en')!r})")


# ---------------------------------------------------------------------------------------------
# Normalized JSONL trees.
# ---------------------------------------------------------------------------------------------


def jsonl_tasks(directory: str | os.PathLike, datasets: Iterable[tuple[str, str, str]],
                prefix: str = "") -> tuple[Task, ...]:
    """``<prefix><dataset>_<language>`` tasks over normalized JSONL, one per
    ``(dataset, language, family)``."""
    return tuple(_dataset_task(prefix, dataset, language, family,
                               JsonlSource(str(directory), dataset=dataset, language=language))
                 for dataset, language, family in datasets)


def _dataset_task(prefix: str, dataset: str, language: str, family: str, source: RecordSource) -> Task:
    """The ``<prefix><dataset>_<language>`` task of a built tree (JSONL or ArrayRecord)."""
    return Task(name=f"{prefix}{dataset}_{language}", source=source,
                metric_fns=families.FAMILIES[family].metrics if family in families.FAMILIES else (),
                language=language, dataset=dataset, family=family)


def find_jsonl_datasets(directory: str | os.PathLike,
                        languages: Sequence[str]) -> tuple[tuple[str, str, str], ...]:
    """``(dataset, language, family)`` of every ``<dataset>/<language>/train.jsonl`` under
    ``directory`` (the layout ``data_pipelines.build`` writes) whose language is in ``languages``;
    the family is read from the file's first record."""
    found = []
    for train_file in sorted(pathlib.Path(directory).glob("*/*/train.jsonl")):
        dataset, language = train_file.parent.parent.name, train_file.parent.name
        if language not in languages:
            continue
        first = next(records_io.iter_records(train_file), None)
        if first is None:
            raise ValueError(f"{train_file} has no records")
        found.append((dataset, language, first.family))
    if not found:
        raise FileNotFoundError(f"no <dataset>/<language>/train.jsonl files for {tuple(languages)} under {directory}")
    return tuple(found)


def jsonl_mixture(directory: str | os.PathLike, name: str, temperature: float,
                  languages: Sequence[str]) -> Mixture:
    """One task per (dataset, language) of a normalized JSONL tree, mixed with an mT5-style
    temperature rate."""
    tasks = jsonl_tasks(directory, find_jsonl_datasets(directory, languages))
    return Mixture.of(name, tasks, rate_temperature(temperature))


# ---------------------------------------------------------------------------------------------
# The versioned TFDS ArrayRecord build (``data_pipelines.build --tfds``).
# ---------------------------------------------------------------------------------------------

ARRAYRECORD_BUILDER = "glob_med"  # = data_pipelines.tfds_builder.BUILDER_NAME
ARRAYRECORD_TEXT_FIELDS = ("id", "source_id", "dataset", "language", "split", "family", "question", "answer")


def _s(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, (bytes, bytearray)) else str(v)


def example_to_record(ex: Mapping[str, Any]) -> Record:
    """A decoded TFDS example of the GlobMed build (bytes or str values, as ``as_data_source``
    returns them) -> Record. ``""`` context / explanation stand for None."""
    options = [_s(o) for o in ex["options"]]
    return Record(
        **{f: _s(ex[f]) for f in ARRAYRECORD_TEXT_FIELDS},
        options=dict(zip(OPTION_LETTERS, options)),
        context=_s(ex["context"]) or None,
        explanation=_s(ex["explanation"]) or None,
        meta=json.loads(_s(ex["meta_json"])),
    )


_ARRAYRECORD_FEATURES = frozenset(ARRAYRECORD_TEXT_FIELDS + ("options", "context", "explanation", "meta_json"))


def serialized_to_record(raw: bytes, where: str = "record") -> Record:
    """One serialized ``tf.train.Example`` of the GlobMed build -> Record: the same Record as
    ``example_to_record`` of tfds's decoded example, read straight from the proto's byte lists
    (tfds's generic NumPy decoder costs about 1.5 ms a record, more than the proto parse).
    ``where`` names the record in errors."""
    from tensorflow_datasets.proto import tf_example_pb2  # lazy: the `data` extra

    feature = tf_example_pb2.Example.FromString(raw).features.feature

    def values(name: str) -> list[str]:
        if name not in feature:
            raise ValueError(f"{where}: no feature {name!r}")
        return [v.decode("utf-8") for v in feature[name].bytes_list.value]

    def one(name: str) -> str:
        vals = values(name)
        if len(vals) != 1:
            raise ValueError(f"{where}: feature {name!r} has {len(vals)} values, expected 1")
        return vals[0]

    return Record(
        **{f: one(f) for f in ARRAYRECORD_TEXT_FIELDS},
        options=dict(zip(OPTION_LETTERS, values("options"))),
        context=one("context") or None,
        explanation=one("explanation") or None,
        meta=json.loads(one("meta_json")),
    )


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in name.split("."))


def arrayrecord_root(data_dir: str | os.PathLike) -> pathlib.Path:
    """``data_dir/glob_med`` (``data_dir`` = the ``--tfds`` data dir, ``OUT/tfds``) or, given
    the build output ``OUT``, ``OUT/tfds/glob_med``."""
    root = pathlib.Path(data_dir)
    for cand in (root / ARRAYRECORD_BUILDER, root / "tfds" / ARRAYRECORD_BUILDER):
        if cand.is_dir():
            return cand
    raise FileNotFoundError(f"no {ARRAYRECORD_BUILDER}/ TFDS build under {data_dir} (or {data_dir}/tfds); "
                            "write one with `python -m data_pipelines.build ... --tfds`")


def arrayrecord_dataset_dir(data_dir: str | os.PathLike, dataset: str, language: str,
                            version: str | None = None) -> pathlib.Path:
    """``<root>/<dataset>-<language>/<version>``; the highest prepared version when None."""
    config = arrayrecord_root(data_dir) / f"{dataset}-{language}"
    if version:
        path = config / version
    else:
        versions = sorted((p.name for p in config.glob("*") if (p / "dataset_info.json").is_file()
                           and all(c.isdigit() or c == "." for c in p.name)), key=_version_key)
        if not versions:
            raise FileNotFoundError(f"no prepared version of {dataset}-{language} under {config.parent}")
        path = config / versions[-1]
    if not (path / "dataset_info.json").is_file():
        raise FileNotFoundError(f"{path} is not a prepared TFDS dataset (no dataset_info.json)")
    return path


@functools.lru_cache(maxsize=1024)
def _split_lengths(dataset_dir: str) -> dict[str, int]:
    info = json.loads((pathlib.Path(dataset_dir) / "dataset_info.json").read_text(encoding="utf-8"))
    return {s["name"]: sum(int(n) for n in s.get("shardLengths", ())) for s in info.get("splits", ())}


class ArrayRecordRecords:
    """Random-access ``Sequence[Record]`` over one split of the ArrayRecord build: ``len`` from
    ``dataset_info.json``; ``[i]`` reads and decodes record ``i`` only (tensorflow_datasets'
    ``ArrayRecordDataSource``, opened lazily, without TensorFlow). Pickles without its open
    files, so every grain worker process opens its own."""

    def __init__(self, dataset_dir: str | os.PathLike, split: str) -> None:
        self.dataset_dir, self.split = str(dataset_dir), split
        lengths = _split_lengths(self.dataset_dir)
        if split not in lengths:
            raise KeyError(f"{self.dataset_dir} has splits {sorted(lengths)}, not {split!r}")
        self._len = lengths[split]
        self._source: Any = None
        self._raw: Any = None  # the undecoded ArrayRecord source when the build has our feature set

    def _open(self) -> Any:
        if self._source is None:
            import tensorflow_datasets as tfds  # lazy: the `data` extra; TensorFlow is not imported

            self._source = tfds.builder_from_directory(self.dataset_dir).as_data_source(self.split)
            if len(self._source) != self._len:
                raise ValueError(f"{self.dataset_dir} {self.split}: {len(self._source)} records on disk, "
                                 f"dataset_info.json says {self._len}")
            features = self._source.dataset_info.features
            if features is not None and set(features.keys()) == _ARRAYRECORD_FEATURES:
                self._raw = self._source.data_source  # records as bytes: parsed by serialized_to_record
        return self._source

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> Record:
        if not isinstance(index, (int,)) and not hasattr(index, "__index__"):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        index = int(index)
        if not -self._len <= index < self._len:
            raise IndexError(f"index {index} out of range for {self._len} records")
        index %= self._len
        source = self._open()
        if self._raw is not None:
            return serialized_to_record(self._raw[index], f"{self.dataset_dir} {self.split} record {index}")
        return example_to_record(source[index])  # another feature set: tfds's generic decoder

    def __getstate__(self) -> dict[str, Any]:
        return {"dataset_dir": self.dataset_dir, "split": self.split, "_len": self._len, "_source": None,
                "_raw": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"ArrayRecordRecords({self.dataset_dir!r}, {self.split!r}, n={self._len})"


@dataclasses.dataclass(frozen=True)
class ArrayRecordSource:
    """Records of one (dataset, language) of the TFDS ArrayRecord build under ``data_dir``.
    ``random_access(split)`` is what the pipeline indexes; calling the source reads the whole
    split into memory (evaluation, small splits); ``num_examples`` reads only the metadata."""

    data_dir: str
    dataset: str
    language: str
    version: str | None = None

    def dataset_dir(self) -> pathlib.Path:
        return arrayrecord_dataset_dir(self.data_dir, self.dataset, self.language, self.version)

    def splits(self) -> tuple[str, ...]:
        return tuple(s for s in SPLITS if s in _split_lengths(str(self.dataset_dir())))

    def num_examples(self, split: str) -> int:
        return _split_lengths(str(self.dataset_dir())).get(split, 0)

    def random_access(self, split: str) -> ArrayRecordRecords:
        return ArrayRecordRecords(self.dataset_dir(), split)

    def __call__(self, split: str) -> list[Record]:
        if split not in self.splits():
            return []
        records = self.random_access(split)
        return [records[i] for i in range(len(records))]


def find_arrayrecord_datasets(data_dir: str | os.PathLike,
                              languages: Sequence[str]) -> tuple[tuple[str, str, str], ...]:
    """``(dataset, language, family)`` of every prepared ``<dataset>-<language>`` with a train
    split whose language is in ``languages``; the family is read from its first train record."""
    found = []
    for config in sorted(p for p in arrayrecord_root(data_dir).iterdir() if p.is_dir() and "-" in p.name):
        dataset, language = config.name.rsplit("-", 1)
        if language not in languages:
            continue
        source = ArrayRecordSource(str(data_dir), dataset, language)
        if source.num_examples("train") == 0:
            continue
        found.append((dataset, language, source.random_access("train")[0].family))
    if not found:
        raise FileNotFoundError(f"no prepared <dataset>-<language> with a train split for {tuple(languages)} "
                                f"under {data_dir}")
    return tuple(found)


def arrayrecord_tasks(data_dir: str | os.PathLike, datasets: Iterable[tuple[str, str, str]],
                      prefix: str = "", version: str | None = None) -> tuple[Task, ...]:
    """``<prefix><dataset>_<language>`` tasks over the ArrayRecord build, one per
    ``(dataset, language, family)`` (the same names as ``jsonl_tasks``)."""
    return tuple(_dataset_task(prefix, dataset, language, family,
                               ArrayRecordSource(str(data_dir), dataset, language, version))
                 for dataset, language, family in datasets)


def arrayrecord_mixture(data_dir: str | os.PathLike, name: str, temperature: float,
                        languages: Sequence[str]) -> Mixture:
    """One task per (dataset, language) of the ArrayRecord build, mixed with an mT5-style
    temperature rate (example counts from the build's metadata)."""
    tasks = arrayrecord_tasks(data_dir, find_arrayrecord_datasets(data_dir, languages))
    return Mixture.of(name, tasks, rate_temperature(temperature))
