"""Option/answer parsing shared by the multiple-choice importers.

Options arrive as a list, a dict keyed by letters or digits, or one string
``"(A) ...\\n(B) ..."``; answers as a letter, ``"(B)"``, an index, an option key or the option
text. Everything is mapped to letters ``A``.. in order. Out-of-range letters are passed on
unchanged so validation reports them ("answer not among options") in one place.
"""

from __future__ import annotations

import re
import string
from typing import Any, Mapping, Sequence

from data_pipelines.importers.base import FieldError, text

_LETTERS = string.ascii_uppercase  # more than OPTION_LETTERS so "11 options" reaches validation
_OPTION_LINE = re.compile(r"^\s*\(?([A-Za-z])[\).:]\s?", re.M)
_LETTER_ANSWER = re.compile(r"^\(?([A-Za-z])\)?\.?$")


def letters(n: int, field: str = "options") -> str:
    if n > len(_LETTERS):
        raise FieldError(field, f"{n} options; at most {len(_LETTERS)} can be lettered")
    return _LETTERS[:n]


def options_from_list(values: Sequence[Any], field: str = "options") -> dict[str, str]:
    return {
        letter: text(v, f"{field}[{i}]", required=False)
        for i, (letter, v) in enumerate(zip(letters(len(values), field), values))
    }


def options_from_mapping(values: Mapping[str, Any], field: str = "options") -> tuple[dict[str, str], dict[str, str]]:
    """Letter- or digit-keyed dict -> (letter options, original key -> letter)."""
    keys = list(values)
    if all(isinstance(k, str) and k.strip().isdigit() for k in keys):
        ordered = sorted(keys, key=lambda k: int(k))
    elif all(isinstance(k, str) and len(k.strip()) == 1 and k.strip().isalpha() for k in keys):
        ordered = sorted(keys, key=lambda k: k.strip().upper())
    else:
        raise FieldError(field, f"option keys must be letters or digits, got {keys!r}")
    lets = letters(len(ordered), field)
    opts = {letter: text(values[k], f"{field}.{k}", required=False) for letter, k in zip(lets, ordered)}
    return opts, {str(k).strip(): letter for letter, k in zip(lets, ordered)}


def options_from_string(s: str, field: str = "options") -> dict[str, str]:
    """Parses ``"(A) x\\n(B) y"`` (also ``A. x`` / ``A) x``); continuation lines are kept."""
    matches = list(_OPTION_LINE.finditer(s))
    if not matches:
        raise FieldError(field, "no '(A) ...' style options found in the string")
    opts: dict[str, str] = {}
    for m, nxt in zip(matches, matches[1:] + [None]):
        letter = m.group(1).upper()
        if letter in opts:
            raise FieldError(field, f"option {letter} appears twice")
        opts[letter] = s[m.end() : nxt.start() if nxt else len(s)].strip()
    return opts


def parse_options(value: Any, field: str = "options") -> tuple[dict[str, str], dict[str, str]]:
    """Any supported options shape -> (letter options, original key -> letter)."""
    if isinstance(value, str):
        return options_from_string(value, field), {}
    if isinstance(value, Mapping):
        return options_from_mapping(value, field)
    if isinstance(value, Sequence):
        return options_from_list(value, field), {}
    raise FieldError(field, f"unsupported options type {type(value).__name__}")


def answer_letter(
    value: Any,
    options: Mapping[str, str],
    *,
    key_map: Mapping[str, str] | None = None,
    fmt: str | None = None,
    field: str = "answer",
) -> str:
    """Maps one answer encoding to an option letter.

    fmt: ``letter``, ``index0``, ``index1``, ``text`` or None (auto: ints are 0-based as in
    MMLU; strings are a letter, ``"(B)"``, an option key, or the exact option text).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        raise FieldError(field, "missing answer")
    if isinstance(value, bool):
        raise FieldError(field, f"boolean answer {value!r}")
    if fmt in ("index0", "index1"):
        return _index_letter(integer(value, field) - (1 if fmt == "index1" else 0), field)
    if isinstance(value, int):
        if fmt not in (None,):
            raise FieldError(field, f"integer answer {value!r} but answer format is {fmt!r}")
        return _index_letter(value, field)
    if not isinstance(value, str):
        raise FieldError(field, f"unsupported answer type {type(value).__name__}")
    v = value.strip()
    if fmt == "text":
        return _text_letter(v, options, field)
    if key_map and v in key_map:
        return key_map[v]
    m = _LETTER_ANSWER.match(v)
    if m:
        return m.group(1).upper()
    if fmt == "letter":
        raise FieldError(field, f"answer {value!r} is not a letter")
    return _text_letter(v, options, field)


_INT_TEXT = re.compile(r"[+-]?[0-9]{1,9}")


def integer(value: Any, field: str) -> int:
    """An index given as an int or as decimal digits (CSV cells); FieldError for anything
    else -- 1.7 or 2.0 (no silent truncation), 1e308, inf, True, ``"1e3"``, 30-digit numbers."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        return int(value)
    if isinstance(value, float):
        raise FieldError(field, f"index {value!r} is a floating-point number, not an integer")
    raise FieldError(field, f"index {value!r} is not an integer")


def _index_letter(idx: int, field: str) -> str:
    if idx < 0:
        raise FieldError(field, f"answer index {idx} is negative (no gold answer?)")
    if idx >= len(_LETTERS):
        raise FieldError(field, f"answer index {idx} out of range")
    return _LETTERS[idx]


def _text_letter(v: str, options: Mapping[str, str], field: str) -> str:
    hits = [k for k, t in options.items() if t.strip() == v]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise FieldError(field, f"answer text {v[:60]!r} matches several options {hits}")
    raise FieldError(field, f"answer {v[:60]!r} is neither a letter nor an option text")
