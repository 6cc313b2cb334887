"""Record validation, quarantine and the kept/quarantined counts table.

:func:`check_record` holds the per-record rules; :class:`Validator` adds the rules that need
history (duplicate ids, cross-language ``source_id`` consistency, first seen wins);
:func:`run_validation` streams importer items through both, writing kept records and
quarantining bad ones -- or, with ``strict=True``, raising on the first bad one.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import re
import sys
from typing import Any, Iterable, Iterator, Sequence

from tqdm import tqdm

from data_pipelines.importers.base import BadRecord, FieldError, Item, Location, checked_value
from data_pipelines.jsonl_io import QuarantineWriter
from globmed_jax.data.records_io import RecordWriter, check_name
from globmed_jax.data.languages import get_language
from globmed_jax.data.families import FAMILIES
from globmed_jax.data.schema import OPTION_LETTERS, SPLITS, Record

log = logging.getLogger(__name__)

MIN_OPTIONS, MAX_OPTIONS = 2, len(OPTION_LETTERS)
Issue = tuple[str, str]  # (field, reason)


class ValidationError(ValueError):
    """Strict mode: the first bad record, as ``file:location: field 'x': reason``."""


def _language_issue(language: object) -> str | None:
    try:
        code = get_language(language).code  # type: ignore[arg-type]
    except (KeyError, AttributeError, TypeError):
        return f"unknown language {language!r}"
    # a name ("Swahili") or padded code would become a second directory for the same language
    return None if code == language else f"language {language!r} is not its code {code!r}"


def _text_issue(r: Record) -> Issue | None:
    """Every string valid Unicode, every number finite, bounded nesting (else the record
    cannot be written as strict JSON lines)."""
    try:
        checked_value(r.to_json())
    except FieldError as e:
        return e.field, e.reason
    except (TypeError, ValueError) as e:  # options/meta of the wrong type
        return "<record>", f"{type(e).__name__}: {e}"
    return None


def check_record(r: Record) -> list[Issue]:
    """Rules that need only the record itself; returns ``[(field, reason), ...]``."""
    issues: list[Issue] = []
    for f in ("id", "source_id", "dataset"):
        if not isinstance(getattr(r, f), str) or not getattr(r, f).strip():
            issues.append((f, f"empty {f}"))
    if isinstance(r.dataset, str) and r.dataset.strip():
        try:  # the dataset name becomes a directory of the output
            check_name("dataset", r.dataset)
        except ValueError as e:
            issues.append(("dataset", str(e)))
    if not isinstance(r.question, str) or not r.question.strip():
        issues.append(("question", "empty question"))
    family = FAMILIES.get(r.family) if isinstance(r.family, str) else None
    if family is None:
        issues.append(("family", f"unknown task family {r.family!r}; known: {tuple(FAMILIES)}"))
    language_issue = _language_issue(r.language)
    if language_issue:
        issues.append(("language", language_issue))
    text_issue = _text_issue(r)
    if text_issue:
        issues.append(text_issue)
        return issues  # the rules below may not survive what it found
    if r.split not in SPLITS:
        issues.append(("split", f"unknown split {r.split!r}; known: {SPLITS}"))
    if not isinstance(r.answer, str):
        issues.append(("answer", f"answer must be a string, got {type(r.answer).__name__}"))
        return issues
    if family is not None:
        issues += _check_options(r) if family.has_options else family.check(r)
    return issues


def _check_options(r: Record) -> list[Issue]:
    n = len(r.options)
    if not MIN_OPTIONS <= n <= MAX_OPTIONS:
        return [("options", f"{n} option(s); mcqa needs {MIN_OPTIONS}..{MAX_OPTIONS}")]
    issues: list[Issue] = []
    if list(r.options) != list(OPTION_LETTERS[:n]):
        issues.append(("options", f"option letters {''.join(r.options)} are not {OPTION_LETTERS[:n]} in order"))
    empty = [k for k, v in r.options.items() if not isinstance(v, str) or not v.strip()]
    if empty:
        issues.append(("options", f"empty option text for {', '.join(empty)}"))
    if r.answer not in r.options:
        issues.append(("answer", f"answer {r.answer!r} not among options {''.join(r.options)}"))
    return issues


_WHERE = re.compile(r"(?s)(.*):(record|line) (0|[1-9]\d{0,8})")  # str(Location) of a record in a file
_KINDS = ("record", "line")


class _Places:
    """Where records were first seen, as one small int each (file index, kind, number) instead of
    a ``"<path>:record 12"`` string: the path is stored once per file. Other labels are kept as
    they are."""

    def __init__(self) -> None:
        self._files: list[str] = []
        self._index: dict[str, int] = {}

    def pack(self, where: str) -> int | str:
        m = _WHERE.fullmatch(where)
        if m is None:
            return where
        file = m[1]
        i = self._index.get(file)
        if i is None:
            i = self._index[file] = len(self._files)
            self._files.append(file)
        return (i << 31) | (_KINDS.index(m[2]) << 30) | int(m[3])

    def unpack(self, place: int | str) -> str:
        if isinstance(place, str):
            return place
        return f"{self._files[place >> 31]}:{_KINDS[(place >> 30) & 1]} {place & ((1 << 30) - 1)}"


def _id_key(record_id: str) -> int:
    """A 64-bit digest standing in for the id (a 40-byte int instead of the string); two distinct
    ids share one with probability ~n^2 / 2^65 (1e-8 for a million records)."""
    return int.from_bytes(hashlib.blake2b(record_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


class Validator:
    """Stateful checks across records: duplicate ids and cross-language alignment.

    The first record seen wins: a later duplicate or misaligned record is the one reported.
    Only accepted records are remembered, so a quarantined record never blocks a good one.

    Memory per accepted record is small and fixed (a build's index must not dominate its host
    memory): the id's 64-bit digest and where it was first seen (one int), plus one entry per
    ``source_id`` (shared by the item's translations) holding an interned signature.
    """

    def __init__(self) -> None:
        self._ids: dict[int, int | str] = {}  # id digest -> place first seen
        self._sources: dict[str, tuple[int, int | str]] = {}  # source_id -> (signature index, place)
        self._signatures: list[Signature] = []
        self._signature_index: dict[Signature, int] = {}
        self._places = _Places()

    def _signature(self, sig: Signature) -> int:
        i = self._signature_index.get(sig)
        if i is None:
            i = self._signature_index[sig] = len(self._signatures)
            self._signatures.append(sig)
        return i

    def check(self, r: Record, where: str = "?") -> list[Issue]:
        """All issues of ``r``; when there are none, ``r`` is remembered as accepted."""
        issues = record_issues(r)
        if issues:
            return issues
        return self.check_history(r.id, r.source_id, signature(r), where)

    def check_history(self, record_id: str, source_id: str, sig: Signature, where: str) -> list[Issue]:
        """The cross-record rules alone, for a record that passed :func:`check_record` (the Beam
        build runs them per ``source_id`` group); remembers it when there are no issues."""
        key = _id_key(record_id)
        if key in self._ids:
            return [duplicate_issue(record_id, self._places.unpack(self._ids[key]))]
        first = self._sources.get(source_id)
        place = self._places.pack(where)
        if first is not None:
            first_sig = self._signatures[first[0]]
            for i, f in enumerate(_ALIGNED):
                a, b = sig[i], first_sig[i]
                if a != b:
                    return [("source_id", f"source_id {source_id!r} misaligned: {f} {a!r} here but {b!r} in "
                                          f"language {first_sig[4]!r} ({self._places.unpack(first[1])})")]
        else:
            self._sources[source_id] = (self._signature(sig), place)
        self._ids[key] = place
        return []


Signature = tuple[str, str, str, int, str]  # dataset, family, split, n_options, language


def signature(r: Record) -> Signature:
    """What translations of one source item must agree on (+ the language, for the message)."""
    return (r.dataset, r.family, r.split, len(r.options), r.language)


def duplicate_issue(record_id: str, first_where: str) -> Issue:
    return ("id", f"duplicate id {record_id!r} (first seen at {first_where})")


_ALIGNED = ("dataset", "family", "split", "n_options")  # what translations of one source item must agree on


Key = tuple[str, str, str]


@dataclasses.dataclass
class FileCount:
    """What one input file gave: records kept and quarantined, and whole-file failures.

    ``seen == kept + quarantined`` counts the records the file could be split into; a file
    with ``file_errors`` held records that were never seen, how many is unknown (``lost``).
    """

    kept: int = 0
    quarantined: int = 0
    file_errors: list[str] = dataclasses.field(default_factory=list)

    @property
    def seen(self) -> int:
        return self.kept + self.quarantined

    @property
    def lost(self) -> int | None:
        """0, or None when a file-level failure means an unknown number of records was lost."""
        return None if self.file_errors else 0


class Counts:
    """Kept / quarantined counts per (dataset, language, split) and per input file; None
    parts print as ``?``. A file-level BadRecord is counted in ``quarantined`` (one entry per
    file, as it always was) and, per file, as a file error whose records are lost."""

    def __init__(self) -> None:
        self.kept: collections.Counter[Key] = collections.Counter()
        self.quarantined: collections.Counter[Key] = collections.Counter()
        self.files: dict[str, FileCount] = {}
        self.first_bad: BadRecord | None = None

    @staticmethod
    def key(dataset: object, language: object, split: object) -> Key:
        # str(): a hostile record's names may be any JSON value; the key must still sort
        return tuple("?" if v in (None, "") else str(v) for v in (dataset, language, split))  # type: ignore[return-value]

    def add(self, key: Key, kept: bool, file: str | None = None) -> None:
        (self.kept if kept else self.quarantined)[key] += 1
        if file is not None:
            fc = self.files.setdefault(file, FileCount())
            if kept:
                fc.kept += 1
            else:
                fc.quarantined += 1

    def add_bad(self, bad: BadRecord) -> None:
        self.first_bad = self.first_bad or bad
        if bad.file_level:
            self.quarantined[Counts.key(bad.dataset, bad.language, bad.split)] += 1
            self.files.setdefault(bad.file, FileCount()).file_errors.append(bad.describe())
        else:
            self.add(Counts.key(bad.dataset, bad.language, bad.split), kept=False, file=bad.file)

    @property
    def total_kept(self) -> int:
        return sum(self.kept.values())

    @property
    def total_quarantined(self) -> int:
        return sum(self.quarantined.values())

    @property
    def files_with_lost_records(self) -> list[str]:
        return [f for f, c in sorted(self.files.items()) if c.lost != 0]

    def rows(self) -> list[tuple[str, str, str, int, int]]:
        keys = sorted(set(self.kept) | set(self.quarantined))
        return [(*k, self.kept[k], self.quarantined[k]) for k in keys]

    def table(self) -> str:
        return format_table(
            ("dataset", "language", "split", "kept", "quarantined"),
            [*self.rows(), ("TOTAL", "", "", self.total_kept, self.total_quarantined)],
        )

    def file_table(self) -> str:
        """Per input file: records seen = kept + quarantined, and records lost."""
        rows = [(f, c.seen, c.kept, c.quarantined, "unknown" if c.lost is None else c.lost)
                for f, c in sorted(self.files.items())]
        return format_table(("file", "seen", "kept", "quarantined", "lost"), rows)


def format_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain fixed-width text table (numbers right-aligned)."""
    rows = [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if c.isdigit() else c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), sep, *(fmt(r) for r in rows)])


def _bad_from_issues(r: Record, loc: Location | str, issues: list[Issue]) -> BadRecord:
    file, where = (loc.file, loc.where) if isinstance(loc, Location) else ("?", str(loc))
    return bad_from_issues(file, where, issues, r.to_json(), r.dataset, r.language, r.split)


def bad_from_issues(file: str, where: str, issues: list[Issue], raw: Any, dataset: Any, language: Any,
                    split: Any) -> BadRecord:
    """The quarantine entry of a record with ``issues`` (the first names the field; the rest are listed)."""
    reason = issues[0][1] + ("" if len(issues) == 1 else f" (+{len(issues) - 1} more: " + "; ".join(f"{f}: {m}" for f, m in issues[1:]) + ")")
    return BadRecord(file, where, issues[0][0], reason, raw, dataset, language, split)


def record_issues(r: Record) -> list[Issue]:
    """:func:`check_record`, never raising (a hostile record must not stop the build)."""
    try:
        return check_record(r)
    except Exception as e:  # noqa: BLE001
        return [("<record>", f"cannot validate: {type(e).__name__}: {e}")]


def validated(items: Iterable[Item], *, strict: bool = False, validator: Validator | None = None) -> Iterator[Record | BadRecord]:
    """Streams items through validation: yields accepted Records and BadRecords.

    ``strict=True`` raises :class:`ValidationError` (file, line/record, field) on the first bad one.
    """
    validator = validator or Validator()
    for item in items:
        if isinstance(item, BadRecord):
            bad: BadRecord | None = item
        else:
            rec, loc = item
            issues = validator.check(rec, str(loc))
            bad = _bad_from_issues(rec, loc, issues) if issues else None
            if bad is None:
                yield rec
                continue
        if strict:
            raise ValidationError(bad.describe())
        yield bad


def _validated_with_file(items: Iterable[Item], *, strict: bool) -> Iterator[tuple[Record | BadRecord, Location]]:
    """:func:`validated`, each output paired with where in which input file it came from."""
    where: list[Location] = []

    def remember(items: Iterable[Item]) -> Iterator[Item]:
        for item in items:
            where[:] = [Location(item.file, item.location) if isinstance(item, BadRecord) else item[1]]
            yield item

    for out in validated(remember(items), strict=strict):
        yield out, where[0]


def _write(writer: RecordWriter | None, r: Record, loc: Location) -> BadRecord | None:
    """Writes ``r``; a record the writer refuses becomes a BadRecord instead of an abort."""
    if writer is None:
        return None
    try:
        writer.write(r)
    except ValueError as e:
        return BadRecord(loc.file, loc.where, "<output>", f"not written: {e}", r.to_json(), r.dataset, r.language, r.split)
    return None


def run_validation(
    items: Iterable[Item],
    *,
    writer: RecordWriter | None = None,
    quarantine: QuarantineWriter | None = None,
    strict: bool = False,
    progress: bool | None = None,
    log_every: int = 50_000,
) -> Counts:
    """Validates a stream, writes kept records / quarantine lines, returns the counts.

    ``progress``: a tqdm bar (None = only when stderr is a terminal); a log line is also
    emitted every ``log_every`` items for non-interactive runs.
    """
    counts = Counts()
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=None, unit=" rec", disable=not show, mininterval=1.0)
    try:
        for n, (out, loc) in enumerate(_validated_with_file(items, strict=strict), start=1):
            if isinstance(out, BadRecord):
                counts.add_bad(out)
                if quarantine is not None:
                    quarantine.write(out)
            else:
                bad = _write(writer, out, loc)
                if bad is None:
                    counts.add(Counts.key(out.dataset, out.language, out.split), kept=True, file=loc.file)
                else:  # e.g. a path that resolves outside the output through a symlink
                    counts.add_bad(bad)
                    if quarantine is not None:
                        quarantine.write(bad)
            bar.update(1)
            if log_every and n % log_every == 0:
                log.info("%d items: %d kept, %d quarantined", n, counts.total_kept, counts.total_quarantined)
    finally:
        bar.close()
    return counts


def validate_records(records: Iterable[Record]) -> tuple[list[Record], list[BadRecord]]:
    """In-memory convenience: ``(kept, quarantined)`` for a list of already-built Records."""
    kept: list[Record] = []
    bad: list[BadRecord] = []
    items = ((r, Location("<memory>", f"record {i}")) for i, r in enumerate(records))
    for out in validated(items):
        (bad if isinstance(out, BadRecord) else kept).append(out)
    return kept, bad
