"""The one normalized record type every importer produces and every consumer reads."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

YES_NO_MAYBE = ("yes", "no", "maybe")
NLI_LABELS = ("entailment", "neutral", "contradiction")
SPLITS = ("train", "validation", "test")
OPTION_LETTERS = "ABCDEFGHIJ"  # at most 10 options (MMLU-Pro)


@dataclasses.dataclass(frozen=True)
class Record:
    """One item of one dataset in one language.

    ``source_id`` is shared by the translations of the same source item, so records stay
    aligned across languages. ``options`` maps letters ``A``.. in order to option text (mcqa
    only). ``answer`` is a letter (mcqa), a YES_NO_MAYBE word, an NLI_LABELS word, or free text.
    """

    id: str
    source_id: str
    dataset: str
    language: str
    split: str
    family: str  # a task family name (data.families), e.g. "mcqa"
    question: str
    answer: str
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)
    context: str | None = None
    explanation: str | None = None
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["options"] = dict(self.options)
        d["meta"] = dict(self.meta)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Record":
        fields = {f.name for f in dataclasses.fields(cls)}
        if "task" in d and "family" not in d:  # files written before the field was renamed
            d = {("family" if k == "task" else k): v for k, v in d.items()}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"unknown record field(s): {sorted(unknown)}")
        return cls(**{k: v for k, v in d.items()})
