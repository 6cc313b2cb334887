"""One object per task family: what differs between mcqa, yes/no/maybe, NLI and open questions.

A family owns its prompt body, its answer target, its closed answer set (with the label each
choice stands for), its validation of a record and whether it is scored by a label match. Every
call site asks ``get_family(record.family)`` instead of comparing family names, so adding a
family means adding one class here (and its parser in ``evaluation.extract``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, ClassVar, Mapping

from globmed_jax.data.schema import NLI_LABELS, OPTION_LETTERS, YES_NO_MAYBE

if TYPE_CHECKING:  # schema imports nothing from here; the annotation only
    from globmed_jax.data.schema import Record

Label = Callable[[str], str]  # field label key -> display text (PromptConfig.label)


class Family:
    """Defaults shared by the families that ask a question (with an optional context)."""

    name: ClassVar[str]
    # The closed set of labels (None: open-ended, or per-record as for mcqa).
    labels: ClassVar[tuple[str, ...] | None] = None
    # Scored by comparing a parsed label with the gold one (False: free text, judged separately).
    closed: ClassVar[bool] = True
    has_options: ClassVar[bool] = False
    # The metrics a task of this family reports (names from evaluation.metrics).
    metrics: ClassVar[tuple[str, ...]] = ("accuracy", "macro_f1")

    def instruction_key(self, option_text: bool) -> str:
        """The key of this family's instruction in the instruction tables."""
        return self.name

    def body(self, record: "Record", label: Label) -> str:
        body = f"{label('question')}: {record.question}"
        return f"{label('context')}: {record.context}\n{body}" if record.context else body

    def target(self, record: "Record", option_text: bool) -> str:
        """What the model must reply; ValueError on an answer invalid for the family."""
        answer = record.answer.strip().lower()
        if answer not in self.labels:
            raise ValueError(f"record {record.id}: answer {answer!r} not in {self.labels}")
        return answer

    def choices(self, record: "Record", option_text: bool) -> tuple[str, ...] | None:
        """The closed set of valid targets, in scoring order (None: open-ended)."""
        return self.labels

    def choice_labels(self, record: "Record") -> tuple[str, ...] | None:
        """The label each ``choices`` entry stands for, in the same order."""
        return self.choices(record, option_text=False)

    def check(self, record: "Record") -> list[tuple[str, str]]:
        """(field, problem) pairs for a record that does not fit this family."""
        issues = []
        if record.options:
            issues.append(("options", f"options given for a {self.name} record"))
        if self.labels is not None and record.answer not in self.labels:
            issues.append(("answer", f"label {record.answer!r} not in {self.labels}"))
        return issues


class MultipleChoice(Family):
    name = "mcqa"
    has_options = True
    metrics = ("accuracy",)

    def instruction_key(self, option_text: bool) -> str:
        return "mcqa_option_text" if option_text else self.name

    def body(self, record: "Record", label: Label) -> str:
        if not record.options:
            raise ValueError(f"mcqa record {record.id} has no options")
        body = f"{label('question')}: {record.question}\n{label('options')}:\n{format_options(record.options)}"
        return f"{label('context')}: {record.context}\n{body}" if record.context else body

    def target(self, record: "Record", option_text: bool) -> str:
        answer = record.answer.strip()
        if answer not in record.options:
            raise ValueError(f"mcqa record {record.id}: answer {answer!r} is not an option letter {sorted(record.options)}")
        return record.options[answer] if option_text else answer

    def choices(self, record: "Record", option_text: bool) -> tuple[str, ...]:
        letters = self.choice_labels(record)
        return tuple(record.options[l] for l in letters) if option_text else letters

    def choice_labels(self, record: "Record") -> tuple[str, ...]:
        return tuple(l for l in OPTION_LETTERS if l in record.options)

    def check(self, record: "Record") -> list[tuple[str, str]]:
        return []  # options and the answer letter are checked for every record by validate


class YesNoMaybe(Family):
    name = "yes_no_maybe"
    labels = YES_NO_MAYBE


class Inference(Family):
    name = "nli"
    labels = NLI_LABELS

    def body(self, record: "Record", label: Label) -> str:
        return f"{label('premise')}: {record.context or ''}\n{label('hypothesis')}: {record.question}"


class OpenQuestion(Family):
    name = "open_qa"
    closed = False
    metrics = ("rouge_l",)

    def target(self, record: "Record", option_text: bool) -> str:
        answer = record.answer.strip()
        if not answer:
            raise ValueError(f"record {record.id}: empty answer")
        return answer

    def choices(self, record: "Record", option_text: bool) -> None:
        return None

    def check(self, record: "Record") -> list[tuple[str, str]]:
        issues = super().check(record)
        if not record.answer.strip():
            issues.append(("answer", "empty answer"))
        return issues


def format_options(options: Mapping[str, str]) -> str:
    """``"A. text\\nB. text"`` in letter order."""
    letters = [l for l in OPTION_LETTERS if l in options]
    if len(letters) != len(options):
        raise ValueError(f"option keys must be letters from {OPTION_LETTERS!r}, got {sorted(options)}")
    return "\n".join(f"{l}. {options[l]}" for l in letters)


# Each family bound to its name once; the order is the tables' order (mcqa first).
FAMILIES: Mapping[str, Family] = {f.name: f for f in (MultipleChoice(), YesNoMaybe(), Inference(), OpenQuestion())}
MCQA, YES_NO_MAYBE_FAMILY, NLI, OPEN_QA = FAMILIES.values()
NAMES: tuple[str, ...] = tuple(FAMILIES)


def get_family(name: str) -> Family:
    """The family named ``name``; ValueError (listing the known names) for any other."""
    family = FAMILIES.get(name)
    if family is None:
        raise ValueError(f"unknown task family {name!r}; known: {NAMES}")
    return family
