"""Shared types and helpers for importers: BadRecord, options, ids, file guards.

Every importer is a function ``(path, ImportOptions) -> Iterator[Item]`` where an item is
either ``(Record, location)`` or a :class:`BadRecord`. Importers never raise for a bad
record or a malformed file: they yield a BadRecord naming file, location and field, and the
validation layer decides (strict mode) whether that is fatal.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import re
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, TypeVar, Union

from globmed_jax.data.languages import get_language
from globmed_jax.data.records_io import record_id
from globmed_jax.data.schema import Record

FILE_FIELD = "<file>"  # BadRecord.field for whole-file errors (malformed JSON/CSV/XML, bad UTF-8)


@dataclasses.dataclass(frozen=True)
class BadRecord:
    """One quarantined item (or a whole file, when ``field == FILE_FIELD``).

    ``dataset``/``language``/``split`` are the importer's best knowledge (may be None); they
    only feed the counts table. ``file_level``: the whole file was rejected (it could not be
    split into records, or has no split), so how many records it held is unknown.
    """

    file: str
    location: str
    field: str
    reason: str
    raw: Any = None
    dataset: str | None = None
    language: str | None = None
    split: str | None = None
    file_level: bool = False

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """``file:location: field 'x': reason`` -- the form used in errors and logs."""
        return f"{self.file}:{self.location}: field {self.field!r}: {self.reason}"


class Location(NamedTuple):
    """Where a record came from: file and position inside it (``line 3``, ``record 5``...)."""

    file: str
    where: str

    def __str__(self) -> str:
        return f"{self.file}:{self.where}"


Item = Union[tuple[Record, Location], BadRecord]


@dataclasses.dataclass(frozen=True)
class ImportOptions:
    """Knobs shared by all importers; each importer reads only the ones it understands.

    language/split override what the importer would infer (file name, folder, default).
    field_map: explicit field names (``globmed``; see docs/data.md), flat or per source.
    cop_base: MedMCQA ``cop`` base (1 = original release, 0 = HF copy); None = importer default.
    question_source: LiveQA question text: ``original`` (SUBJECT + MESSAGE), ``paraphrase``
    (NIST-PARAPHRASE) or ``summary`` (NLM-Summary).
    """

    language: str | None = None
    split: str | None = None
    field_map: Mapping[str, Any] | None = None
    cop_base: int | None = None
    question_source: str = "original"


class FieldError(ValueError):
    """A record-level problem with one named field (becomes a BadRecord)."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"field {field!r}: {reason}")
        self.field = field
        self.reason = reason


class FileFormatError(ValueError):
    """A whole file cannot be parsed; ``position`` is e.g. ``line 3 column 7`` or ``byte 120``."""

    def __init__(self, file: pathlib.Path | str, position: str, reason: str, snippet: str = ""):
        super().__init__(f"{file}:{position}: {reason}")
        self.file = str(file)
        self.position = position
        self.reason = reason
        self.snippet = snippet

    def to_bad_record(self, **ctx: str | None) -> BadRecord:
        return BadRecord(self.file, self.position, FILE_FIELD, self.reason, self.snippet, **ctx, file_level=True)


# --- normalisation helpers -------------------------------------------------------------

_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "dev": "validation",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "test",
}


def normalize_split(name: str) -> str:
    """Maps common split spellings (dev/val/valid) to SPLITS; unknown names pass through so
    validation can quarantine them with a clear reason."""
    return _SPLIT_ALIASES.get(name.strip().lower(), name.strip())


def split_from_name(name: str) -> str | None:
    """Finds a split word in a file name such as ``phrases_no_exclude_test.jsonl``."""
    stem = pathlib.Path(name).name.lower()
    for token in stem.replace("-", "_").replace(".", "_").split("_"):
        if token in _SPLIT_ALIASES:
            return _SPLIT_ALIASES[token]
    return None


def resolve_language(value: str) -> str:
    """ISO code for a code or English name; unknown values pass through for validation."""
    try:
        return get_language(value).code
    except KeyError:
        return value.strip()


def text(value: Any, field: str, *, required: bool = True) -> str:
    """A stripped string from a str/number field; FieldError when required and empty."""
    if value is None:
        if required:
            raise FieldError(field, "missing")
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise FieldError(field, f"expected text, got {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise FieldError(field, "empty")
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_VALUE_DEPTH = 32  # nesting a source item may have; deeper is hostile or broken


def _value_problem(value: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return f"non-finite number {value!r}"
    if isinstance(value, str):
        m = _SURROGATE.search(value)  # C speed: a per-character Python loop dominated the build
        if m is not None:
            return f"lone surrogate U+{ord(m.group()):04X} (not valid Unicode text)"
    return None


def checked_value(value: Any, field: str = "<record>") -> Any:
    """``value`` itself when every number in it is finite, every string (keys included) is
    valid Unicode and it nests at most MAX_VALUE_DEPTH levels; else a FieldError naming the
    path (``options[2]``, ``meta.year``). Iterative, so deep input cannot overflow the stack."""
    stack: list[tuple[str, Any, int]] = [(field, value, 0)]
    while stack:
        path, v, depth = stack.pop()
        if depth > MAX_VALUE_DEPTH:
            raise FieldError(path, f"nested deeper than {MAX_VALUE_DEPTH} levels")
        problem = _value_problem(v)
        if problem:
            raise FieldError(path, problem)
        prefix = "" if path == "<record>" else path + "."
        if isinstance(v, Mapping):
            for k, x in v.items():
                key_problem = _value_problem(k)
                if key_problem:
                    raise FieldError(f"{prefix}<key>", key_problem)
                stack.append((f"{prefix}{k}", x, depth + 1))
        elif isinstance(v, (list, tuple)):
            stack.extend((f"{path}[{i}]", x, depth + 1) for i, x in enumerate(v))
    return value


def get_field(item: Mapping[str, Any], field: str) -> Any:
    if not isinstance(item, Mapping):
        raise FieldError("<record>", f"expected an object, got {type(item).__name__}")
    if field not in item:
        raise FieldError(field, "missing")
    return item[field]


def squash_ws(s: str) -> str:
    """Collapses runs of whitespace (hard-wrapped XML text) into single spaces."""
    return " ".join(s.split())


def make_record(
    *,
    dataset: str,
    family: str,
    language: str,
    split: str,
    local_id: str,
    question: str,
    answer: str,
    options: Mapping[str, str] | None = None,
    context: str | None = None,
    explanation: str | None = None,
    meta: Mapping[str, Any] | None = None,
    source_id: str | None = None,
) -> Record:
    """Builds a Record with the id conventions used by every importer.

    ``source_id`` defaults to ``dataset:local_id`` and is shared by translations of the same
    item; ``id`` is ``source_id@language`` so it is unique per item per language.
    """
    sid = source_id if source_id is not None else f"{dataset}:{local_id}"
    return Record(
        id=record_id(sid, language),
        source_id=sid,
        dataset=dataset,
        language=language,
        split=split,
        family=family,
        question=question,
        answer=answer,
        options=dict(options or {}),
        context=context or None,
        explanation=explanation or None,
        meta=dict(meta or {}),
    )


# --- file iteration and guards ----------------------------------------------------------


def list_files(path: pathlib.Path, suffixes: Iterable[str]) -> list[pathlib.Path]:
    """``path`` itself when it is a file, else the sorted files below it with a given suffix."""
    path = pathlib.Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"input not found: {path}")
    sfx = tuple(s.lower() for s in suffixes)
    return sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(sfx))


T = TypeVar("T")


def guarded_file(
    file: pathlib.Path,
    parse: Callable[[pathlib.Path], T],
    convert: Callable[[T], Iterator[Item]],
    **ctx: str | None,
) -> Iterator[Item]:
    """Parses a whole file first, so a malformed file becomes exactly one file-level
    BadRecord instead of a half-imported file; then yields the converted items."""
    try:
        parsed = parse(file)
    except FileFormatError as e:
        yield e.to_bad_record(**ctx)
        return
    yield from convert(parsed)


def guarded_item(
    build: Callable[[], Record],
    *,
    file: pathlib.Path,
    location: str,
    raw: Any,
    **ctx: str | None,
) -> Item:
    """Runs one record conversion; any field problem becomes a BadRecord, never an exception.

    ``build`` is called right here, so closures over the caller's loop variables are safe.
    """
    try:
        return build(), Location(str(file), location)
    except FieldError as e:
        return BadRecord(str(file), location, e.field, e.reason, raw, **ctx)
    # ArithmeticError: int(inf) and friends; RecursionError: a value too deep for a builder.
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError, RecursionError) as e:
        return BadRecord(str(file), location, "<record>", f"{type(e).__name__}: {e}", raw, **ctx)


def file_split(file: pathlib.Path, opts: ImportOptions, default: str | None = None) -> str | None:
    """Split from the override, else from the file name, else ``default``."""
    if opts.split:
        return normalize_split(opts.split)
    return split_from_name(file.name) or default


def no_split_error(file: pathlib.Path, **ctx: str | None) -> BadRecord:
    return BadRecord(
        str(file), "file", "split", "cannot infer the split from the file name; pass --split", None, **ctx,
        file_level=True,
    )


def import_split_files(
    path: pathlib.Path,
    suffixes: Iterable[str],
    opts: ImportOptions,
    *,
    dataset: str,
    language: str | None,
    parse: Callable[[pathlib.Path], Any],
    convert: Callable[[pathlib.Path, Any, str], Iterator[Item]],
    default_split: str | None = None,
) -> Iterator[Item]:
    """The loop most importers share: each file's split comes from ``--split`` or the file name
    (else ``default_split``; a file with none is quarantined whole), the file is parsed as a
    whole (a malformed file becomes one BadRecord), then ``convert(file, parsed, split)``
    yields its items."""
    for file in list_files(path, suffixes):
        split = file_split(file, opts, default_split)
        ctx = dict(dataset=dataset, language=language, split=split)
        if split is None:
            yield no_split_error(file, **ctx)
            continue
        yield from guarded_file(file, parse, lambda parsed, file=file, split=split: convert(file, parsed, split), **ctx)
