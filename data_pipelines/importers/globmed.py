"""GlobMed public-release importer: ``DIR/GlobMed_<Source>/<lang>/{train,test}.json``.

Each file is a JSON array or JSON lines. The field names inside are not documented, so the
common variants are detected per record (see docs/data.md for the order of precedence), and
an explicit field map can override them, flat or per source::

    {"question": "q", "options": "opts", "answer": "gold", "answer_format": "index1"}
    {"MedQA": {"answer": "answer_idx"}, "PubMedQA": {"answer": "final_decision"}}

``source_id`` is ``<dataset>:<record id>`` when the record has an id field, else
``<dataset>:<split>:<index>`` -- so translations stay aligned across language folders as long
as the files list items in the same order.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any, Iterable, Iterator, Mapping

from data_pipelines.importers.base import (
    BadRecord,
    FieldError,
    ImportOptions,
    Item,
    get_field,
    guarded_file,
    make_record,
    normalize_split,
    resolve_language,
    text,
)
from data_pipelines.importers.bionli import nli_record
from data_pipelines.importers.mcqa import answer_letter, parse_options
from data_pipelines.importers.medmcqa import cop_to_letter
from data_pipelines.importers.convert import StreamedJsonEntries, convert_entries
from globmed_jax.data import families
from globmed_jax.data.languages import get_language
from globmed_jax.data.schema import Record

# normalized source name -> (dataset id, task family)
SOURCES: dict[str, tuple[str, str]] = {
    "medqa": ("medqa", "mcqa"),
    "headqa": ("headqa", "mcqa"),
    "medmcqa": ("medmcqa", "mcqa"),
    "mmlupro": ("mmlu_pro", "mcqa"),
    "medexpqa": ("medexpqa", "mcqa"),
    "pubmedqa": ("pubmedqa", "yes_no_maybe"),
    "bionli": ("bionli", "nli"),
    "liveqa": ("liveqa", "open_qa"),
    "expertqamed": ("expertqa_med", "open_qa"),
    "expertqabio": ("expertqa_bio", "open_qa"),
}
PREFIX = "GlobMed_"

ID_FIELDS = ("id", "_id", "qid", "question_id", "uid", "sample_id", "pubid", "pmid", "PMID")
QUESTION_FIELDS = ("question", "Question", "full_question", "qtext", "QUESTION", "query", "input")
CONTEXT_FIELDS = ("context", "contexts", "CONTEXTS", "passage")
EXPLANATION_FIELDS = ("explanation", "exp", "full_answer", "long_answer", "LONG_ANSWER", "rationale", "cot_content")
OPEN_ANSWER_FIELDS = ("answer", "response", "reference_answer", "long_answer", "answer_string", "output")
YNM_ANSWER_FIELDS = ("final_decision", "answer", "label")
# (field, answer format) in order of precedence; MedQA's ``answer`` is the option *text*, so
# its ``answer_idx`` letter must win.
MCQA_ANSWER_FIELDS = (
    ("answer_idx", None), ("cop", "cop"), ("correct_option", "index1"), ("answer", None),
    ("answer_index", "index0"), ("correct_answer", None), ("label", None), ("gold", None),
)


def norm_source(name: str) -> str:
    """``GlobMed_MMLU-Pro`` / ``MMLU-Pro`` -> ``mmlupro``."""
    if name.startswith(PREFIX):
        name = name[len(PREFIX) :]
    return re.sub(r"[^a-z0-9]", "", name.lower())


def field_map_for(field_map: Mapping[str, Any] | None, source: str) -> dict[str, Any]:
    """Flat map (applies to every source) or ``{source: map}`` matched on the normalized name."""
    if not field_map:
        return {}
    if all(isinstance(v, Mapping) for v in field_map.values()):
        for k, v in field_map.items():
            if norm_source(k) == norm_source(source):
                return dict(v)
        return {}
    return dict(field_map)


def _first(obj: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str | None, Any]:
    for n in names:
        if n in obj and obj[n] not in (None, ""):
            return n, obj[n]
    return None, None


def _pick(obj: Mapping[str, Any], fm: Mapping[str, Any], key: str, names: tuple[str, ...]) -> tuple[str | None, Any]:
    """The field-map field when given (must exist), else the first detected variant."""
    if key in fm:
        return fm[key], get_field(obj, fm[key])
    return _first(obj, names)


def _context(value: Any, field: str) -> str:
    """Context as str, list of str, or PubMedQA-HF dict ``{"contexts": [...]}``."""
    if isinstance(value, Mapping):
        value = value.get("contexts", [])
    if isinstance(value, list):
        return "\n".join(text(v, field, required=False) for v in value)
    return text(value, field, required=False)


def _mcqa_options(obj: Mapping[str, Any], fm: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    if "options" in fm:
        return parse_options(get_field(obj, fm["options"]), fm["options"])
    for name in ("options", "choices", "answers"):
        value = obj.get(name)
        if isinstance(value, Mapping) and "text" in value:  # HF {"label": [...], "text": [...]}
            value = value["text"]
        if isinstance(value, (str, list, Mapping)) and value:
            return parse_options(value, name)
    if "opa" in obj:  # MedMCQA columns
        cols = [c for c in ("opa", "opb", "opc", "opd", "ope") if c in obj]
        return {"ABCDE"[i]: text(obj[c], c, required=False) for i, c in enumerate(cols)}, {}
    if "A" in obj and "B" in obj:  # MMLU-style columns
        cols = [c for c in "ABCDEFGHIJ" if c in obj]
        return {c: text(obj[c], c, required=False) for c in cols}, {}
    raise FieldError("options", "no options found (tried options/choices/answers, opa.., A..)")


def _mcqa_answer(obj: Mapping[str, Any], fm: Mapping[str, Any], options: dict[str, str], keys: dict[str, str], cop_base: int | None) -> str:
    if "answer" in fm:
        fmt = fm.get("answer_format")
        value = get_field(obj, fm["answer"])
        if fmt == "cop" or (fmt is None and fm["answer"] == "cop"):
            fmt = "index1" if cop_base == 1 else "index0"
        return answer_letter(value, options, key_map=keys, fmt=fmt, field=fm["answer"])
    for name, fmt in MCQA_ANSWER_FIELDS:
        if name in obj and obj[name] not in (None, ""):
            if fmt == "cop":
                if cop_base is None:
                    raise FieldError("cop", "cop base ambiguous in this file (both 0 and the last index occur); set cop_base")
                return cop_to_letter(obj[name], cop_base, len(options))
            return answer_letter(obj[name], options, key_map=keys, fmt=fmt, field=name)
    raise FieldError("answer", "no answer field found (tried " + ", ".join(n for n, _ in MCQA_ANSWER_FIELDS) + ")")


def detect_cop_base(items: Iterable[tuple[str, Any]], default: int) -> int | None:
    """0 if some ``cop`` is 0, 1 if some equals the option count (4); None if both occur."""
    cops = {o.get("cop") for _, o in items if isinstance(o, Mapping) and isinstance(o.get("cop"), int)}
    zero, top = 0 in cops, 4 in cops
    if zero and top:
        return None
    return 0 if zero else 1 if top else default


def _nli(obj: Mapping[str, Any], fm: Mapping[str, Any], common: dict, _cop_base: int | None) -> Record:
    names = {"premise": fm.get("premise", fm.get("context")), "hypothesis": fm.get("hypothesis", fm.get("question")),
             "label": fm.get("label", fm.get("answer"))}
    mapped = {k: get_field(obj, v) for k, v in names.items() if v}
    return nli_record({**obj, **mapped}, dataset=common["dataset"], lang=common["language"], split=common["split"],
                      local=common["local_id"])


def _question_fields(obj: Mapping[str, Any], fm: Mapping[str, Any], common: dict) -> tuple[dict, str | None, Any]:
    qf, q = _pick(obj, fm, "question", QUESTION_FIELDS)
    cf, c = _pick(obj, fm, "context", CONTEXT_FIELDS)
    ef, e = _pick(obj, fm, "explanation", EXPLANATION_FIELDS)
    fields = dict(common, question=text(q, qf or "question"), context=_context(c, cf or "context"))
    return fields, ef, e


def _mcqa(obj: Mapping[str, Any], fm: Mapping[str, Any], common: dict, cop_base: int | None) -> Record:
    fields, ef, e = _question_fields(obj, fm, common)
    options, keys = _mcqa_options(obj, fm)
    answer = _mcqa_answer(obj, fm, options, keys, cop_base)
    return make_record(**fields, answer=answer, options=options, explanation=text(e, ef or "explanation", required=False))


def _yes_no_maybe(obj: Mapping[str, Any], fm: Mapping[str, Any], common: dict, _cop_base: int | None) -> Record:
    fields, ef, e = _question_fields(obj, fm, common)
    af, a = _pick(obj, fm, "answer", YNM_ANSWER_FIELDS)
    return make_record(**fields, answer=text(a, af or "answer").lower(), explanation=text(e, ef or "explanation", required=False))


def _open_qa(obj: Mapping[str, Any], fm: Mapping[str, Any], common: dict, _cop_base: int | None) -> Record:
    fields, ef, _ = _question_fields(obj, fm, common)
    answer_fields = tuple(f for f in OPEN_ANSWER_FIELDS if f != ef)  # explanation != answer
    af, a = _pick(obj, fm, "answer", answer_fields)
    return make_record(**fields, answer=text(a, af or "answer"))


# The field conventions of each family in the GlobMed release, keyed by the family's name.
_RECORD_BUILDERS = {families.NLI.name: _nli, families.MCQA.name: _mcqa,
                    families.YES_NO_MAYBE_FAMILY.name: _yes_no_maybe, families.OPEN_QA.name: _open_qa}


def globmed_record(
    obj: Any, *, dataset: str, family: str, lang: str, split: str, index: int, fm: Mapping[str, Any],
    cop_base: int | None,
) -> Any:
    """One GlobMed item (any detected variant) -> Record."""
    if not isinstance(obj, Mapping):
        raise FieldError("<record>", f"expected an object, got {type(obj).__name__}")
    if family not in _RECORD_BUILDERS:
        raise FieldError("family", f"unknown task family {family!r}; known: {sorted(_RECORD_BUILDERS)}")
    _, rid = _pick(obj, fm, "id", ID_FIELDS)
    local = f"{split}:{index}" if rid in (None, "") else str(rid)
    common = dict(dataset=dataset, family=family, language=lang, split=split, local_id=local)
    return _RECORD_BUILDERS[family](obj, fm, common, cop_base)


def _release_files(source_dir: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in source_dir.rglob("*") if p.is_file() and p.suffix.lower() in (".json", ".jsonl"))


def release_sources(root: pathlib.Path) -> list[tuple[str, pathlib.Path]]:
    """``(source name, folder)`` of a release directory, one ``GlobMed_<Source>`` folder, or a file."""
    root = pathlib.Path(root)
    if root.is_file():
        return [(root.parent.parent.name, root)]
    if not root.is_dir():
        raise FileNotFoundError(f"input not found: {root}")
    if root.name.startswith(PREFIX):
        return [(root.name, root)]
    return [(p.name, p) for p in sorted(root.iterdir()) if p.is_dir() and p.name.startswith(PREFIX)]


class UnknownLanguages:
    """Language folders whose name is not in the language registry, with their record counts
    per split. Passed to :func:`import_sources`, such folders are counted here and skipped (one
    report line per language) instead of quarantining every record."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], dict[str, int]] = {}  # (folder name, source) -> split -> n
        self.files: dict[str, int] = {}  # file -> records in it

    def add(self, folder: str, source: str, split: str, file: str, n: int) -> None:
        per_split = self.counts.setdefault((folder, source), {})
        per_split[split] = per_split.get(split, 0) + n
        self.files[file] = n

    def by_language(self) -> dict[str, dict[str, int]]:
        """folder name -> {source: records}."""
        out: dict[str, dict[str, int]] = {}
        for (folder, source), per_split in sorted(self.counts.items()):
            out.setdefault(folder, {})[source] = sum(per_split.values())
        return out

    @property
    def total(self) -> int:
        return sum(self.files.values())

    def report(self) -> list[str]:
        """One line per unknown language: records per source and how to add it."""
        lines = []
        for folder, per_source in self.by_language().items():
            total = sum(per_source.values())
            detail = ", ".join(f"{s} {n}" for s, n in per_source.items())
            lines.append(f"language folder {folder!r} is not in the language registry: {total} records skipped "
                         f"({detail}); add it to LANGUAGES in globmed_jax/data/languages.py (ISO code, English "
                         f"name, script, low_resource) to import them")
        return lines


def _known_language(name: str) -> bool:
    try:
        get_language(name)
        return True
    except KeyError:
        return False


def import_globmed(path: pathlib.Path, opts: ImportOptions) -> Iterator[Item]:
    """Yields records of every ``GlobMed_<Source>/<lang>/<split>.json[l]`` below ``path``."""
    return import_sources(release_sources(path), opts)


def import_sources(sources: Iterable[tuple[str, pathlib.Path]], opts: ImportOptions,
                   unknown: UnknownLanguages | None = None) -> Iterator[Item]:
    """Records of ``(source name, folder)`` pairs: ``folder`` holds ``<lang>/<split>.json[l]``
    (a ``GlobMed_<Source>`` folder, or a hub snapshot named by its commit) or is one such file.

    With ``unknown``, language folders not in the registry are counted there and skipped;
    without it their records reach validation, which quarantines each one."""
    for source, file in source_files(sources):
        yield from _import_file(file, source, opts, unknown)


def source_files(sources: Iterable[tuple[str, pathlib.Path]]) -> list[tuple[str, pathlib.Path]]:
    """``(source name, file)`` of every data file of ``sources``, in import order: the units a
    distributed build imports independently (``import_sources([(source, file)])``)."""
    return [(source, file) for source, folder in sources
            for file in ([folder] if folder.is_file() else _release_files(folder))]


def _import_file(file: pathlib.Path, source: str, opts: ImportOptions,
                 unknown: UnknownLanguages | None) -> Iterator[Item]:
    lang_dir = file.parent
    split = normalize_split(opts.split or file.stem)
    fm = field_map_for(opts.field_map, source)
    given_family = fm.get("family", fm.get("task"))  # "task": the field map's older name
    dataset, family = SOURCES.get(norm_source(source), (fm.get("dataset") or norm_source(source), given_family))
    dataset = fm.get("dataset", dataset)
    family = given_family or family
    if unknown is not None and opts.language is None and not _known_language(lang_dir.name):
        try:
            n = sum(1 for _ in StreamedJsonEntries(file))
        except Exception:  # unreadable: still one file-level entry, below, with the unknown name
            n = None
        if n is not None:
            unknown.add(lang_dir.name, source, split, str(file), n)
            return
    lang = resolve_language(opts.language or lang_dir.name)
    ctx = dict(dataset=dataset, language=lang, split=split)
    if not source.startswith(PREFIX):
        yield BadRecord(str(file), "file", "<path>", f"not in the {PREFIX}<Source>/<lang>/<split>.json layout", None, **ctx, file_level=True)
        return
    if family is None:
        known = ", ".join(sorted(SOURCES))
        yield BadRecord(str(file), "file", "<source>", f"unknown GlobMed source {source!r} (known: {known}); give 'family' in the field map", None, **ctx, file_level=True)
        return
    yield from guarded_file(
        file, StreamedJsonEntries,  # read per record: a release file's size does not grow memory
        lambda items: _convert(file, items, dataset, family, lang, split, fm, opts), **ctx,
    )


def _may_hold_cop(line: str) -> bool:
    """Whether a JSON line can have a ``cop`` key (spelled plainly or with escapes)."""
    return '"cop"' in line or "\\u" in line


def _convert(
    file: pathlib.Path, items: StreamedJsonEntries, dataset: str, family: str, lang: str, split: str,
    fm: Mapping[str, Any], opts: ImportOptions,
) -> Iterator[Item]:
    ctx = dict(dataset=dataset, language=lang, split=split)
    default_base = fm.get("cop_base", opts.cop_base if opts.cop_base is not None else 0)
    if "cop_base" in fm:
        cop_base: int | None = int(fm["cop_base"])
    elif family == families.MCQA.name:  # only multiple choice reads `cop`: one more pass, over the
        # lines that can hold it
        cop_base = detect_cop_base(StreamedJsonEntries(file, wanted=_may_hold_cop), int(default_base))
    else:
        cop_base = int(default_base)
    return convert_entries(file, items, lambda obj, index: globmed_record(
        obj, dataset=dataset, family=family, lang=lang, split=split, index=index, fm=fm, cop_base=cop_base), ctx)
