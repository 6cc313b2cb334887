"""Prompts per task family: chat messages for a Record and the answer target the model must emit.

Training (SFT formatting) and evaluation build prompts here, so both see exactly the same text.
Instructions are English by default (as in the paper's public prompts); ``PromptConfig`` replaces
them, the field labels or the system prompt.

Multiple-choice items have two answer formats (``PromptConfig.mcqa_answer``):

* ``"letter"`` (default; the paper's protocol): the model replies with the option letter;
* ``"option_text"``: it replies with the text of the correct option, and ranking scores each
  option's text. This is the "cloze formulation" that evaluation suites use for small models
  (OLMES, Gu et al. 2024; lm-eval-harness's ARC/HellaSwag tasks): a model too small to have
  learnt to point from an answer back to its letter can still show what it knows. The
  predicted label stays the letter either way (``choice_labels``). Its instruction has the key
  ``mcqa_option_text``.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from globmed_jax.data.families import Family, format_options, get_family
from globmed_jax.data.schema import Record

MCQA_ANSWER_FORMATS = ("letter", "option_text")

DEFAULT_INSTRUCTIONS: Mapping[str, str] = {
    "mcqa": "Answer the following multiple-choice medical question. Reply with the letter of the correct option only.",
    "mcqa_option_text": "Answer the following multiple-choice medical question. Reply with the text of the correct option only.",
    "yes_no_maybe": "Answer the following medical question with yes, no or maybe only.",
    "nli": "Decide whether the hypothesis follows from the premise. Reply with entailment, neutral or contradiction only.",
    "open_qa": "Answer the following medical question concisely.",
}

DEFAULT_LABELS: Mapping[str, str] = {
    "question": "Question",
    "options": "Options",
    "context": "Context",
    "premise": "Premise",
    "hypothesis": "Hypothesis",
}


@dataclasses.dataclass(frozen=True)
class PromptConfig:
    """``instructions`` / ``labels`` are (key, text) pairs overriding the English defaults (tuples
    keep the config hashable); ``system_prompt`` adds a system turn; ``enable_thinking`` is passed
    to chat templates that understand it (Qwen3 renders an empty think block when False);
    ``mcqa_answer`` is one of ``MCQA_ANSWER_FORMATS`` (see the module docstring)."""

    system_prompt: str | None = None
    instructions: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    enable_thinking: bool | None = None
    mcqa_answer: str = "letter"

    def __post_init__(self):
        if self.mcqa_answer not in MCQA_ANSWER_FORMATS:
            raise ValueError(f"mcqa_answer must be one of {MCQA_ANSWER_FORMATS}, got {self.mcqa_answer!r}")

    @property
    def option_text(self) -> bool:
        """Whether multiple-choice answers are the option's text rather than its letter."""
        return self.mcqa_answer == "option_text"

    def instruction(self, family: Family | str) -> str:
        fam = get_family(family) if isinstance(family, str) else family
        key = fam.instruction_key(self.option_text)
        return dict(self.instructions).get(key, DEFAULT_INSTRUCTIONS[key])

    def label(self, key: str) -> str:
        return dict(self.labels).get(key, DEFAULT_LABELS[key])


def user_message(record: Record, config: PromptConfig = PromptConfig()) -> str:
    """The user turn: instruction, blank line, then the task-family-specific body."""
    family = get_family(record.family)
    return f"{config.instruction(family)}\n\n{family.body(record, config.label)}"


def build_messages(record: Record, config: PromptConfig = PromptConfig(),
                   shots: Sequence[Record] = ()) -> list[dict[str, str]]:
    """Chat messages for ``apply_chat_template``: the system turn (if configured), one (user,
    assistant) pair per few-shot example, then the item's user turn. Training uses no shots."""
    messages = []
    if config.system_prompt:
        messages.append({"role": "system", "content": config.system_prompt})
    for shot in shots:
        messages.append({"role": "user", "content": user_message(shot, config)})
        messages.append({"role": "assistant", "content": answer_target(shot, config)})
    messages.append({"role": "user", "content": user_message(record, config)})
    return messages


def answer_target(record: Record, config: PromptConfig = PromptConfig()) -> str:
    """What the model must reply: the letter (mcqa; the option's text when ``config.mcqa_answer``
    is "option_text"), yes/no/maybe, the NLI label, or the free text.

    Raises ValueError on an answer that is invalid for its task family, so bad records fail loudly
    at formatting time instead of training on garbage."""
    return get_family(record.family).target(record, config.option_text)


def gold_label(record: Record) -> str:
    """The label a prediction is compared with: the option letter (mcqa, whatever the answer
    format), yes/no/maybe, the NLI label, or the free text."""
    return answer_target(record)


def choice_labels(record: Record) -> tuple[str, ...] | None:
    """The label each ``answer_choices`` entry stands for, in the same order (None for open_qa)."""
    return get_family(record.family).choice_labels(record)


def answer_choices(record: Record, config: PromptConfig = PromptConfig()) -> tuple[str, ...] | None:
    """The closed set of valid targets for scoring (None for open_qa): option letters (or their
    texts when ``config.mcqa_answer`` is "option_text"), yes/no/maybe or the NLI labels."""
    return get_family(record.family).choices(record, config.option_text)
