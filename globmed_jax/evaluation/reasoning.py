"""Reasoning mode: generate with a thinking budget, strip the reasoning, parse the final answer.

The prompt is rendered with ``enable_thinking=True`` (chat templates that think, like Qwen3's,
open a reasoning block; others ignore the flag) and greedy generation gets
``max_new_tokens = reasoning_budget + answer allowance`` (the allowance is the run's
``max_new_tokens`` for closed answers, ``open_qa_max_new_tokens`` for free text). The budget is
therefore the part of the limit left for thinking; it is not enforced on the reasoning alone.

The generated ids are decoded keeping ``<think>`` / ``</think>`` (Qwen3 marks them special, so a
plain ``skip_special_tokens`` decode would glue the reasoning to the answer). A template whose
generation prompt already opens ``<think>`` gets it prepended, so the stored text says what was
generated. ``split`` then reads the text:

* ``</think>`` present: the answer is what follows the last one;
* ``<think>`` opened but never closed: the budget ran out inside the reasoning, there is no
  final answer -- counted as a parse failure (``truncated``) and reported as its own rate;
* neither: the model did not think (a template or model without reasoning); the whole text is
  the answer.

The answer is parsed by ``extract.parse_answer`` (the multilingual parser); rows report
``parse_failure_rate`` (truncations included) and ``reasoning_truncated_rate``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from globmed_jax.data.prompts import PromptConfig
from globmed_jax.data.schema import Record
from globmed_jax.evaluation import extract
from globmed_jax.evaluation.scoring import Prediction

MODE = "reasoning"
OPEN, CLOSE = "<think>", "</think>"

__all__ = ["MODE", "Split", "split", "decode", "parse", "predict", "thinking_config", "fingerprint_fields",
           "cell_fields", "check_budget"]


@dataclasses.dataclass(frozen=True)
class Split:
    """A generation read as reasoning + answer. ``reasoning``: the think block's text (None when
    there was none); ``truncated``: the think block never closed (no answer)."""

    reasoning: str | None
    answer: str
    truncated: bool


def split(text: str | None) -> Split:
    """The reasoning and the final answer of a generated ``text`` (see the module docstring)."""
    text = text or ""
    close = text.rfind(CLOSE)
    if close >= 0:
        reasoning = text[:close].replace(OPEN, " ").replace(CLOSE, " ").strip()
        return Split(reasoning, text[close + len(CLOSE):].strip(), False)
    opened = text.find(OPEN)
    if opened >= 0:
        return Split(text[opened + len(OPEN):].strip(), text[:opened].strip(), True)
    return Split(None, text.strip(), False)


def check_budget(budget: Any) -> int:
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0:
        raise ValueError(f"reasoning_budget must be a non-negative integer (tokens), got {budget!r}")
    return int(budget)


def thinking_config(config: PromptConfig) -> PromptConfig:
    """``config`` with thinking switched on; ValueError when it was explicitly switched off."""
    if config.enable_thinking is False:
        raise ValueError("reasoning mode needs thinking: the model's enable_thinking is 'false'; "
                         "set it to '' or 'true', or use mode 'generate'")
    return dataclasses.replace(config, enable_thinking=True)


def decode(tokenizer: Any, ids: Sequence[int]) -> str:
    """``ids`` as text with special tokens dropped EXCEPT the think markers, which are kept as
    ``<think>`` / ``</think>`` wherever the tokenizer has them as single tokens."""
    vocab = tokenizer.get_vocab()
    markers = {vocab[m]: m for m in (OPEN, CLOSE) if m in vocab}
    pieces, run = [], []
    for i in ids:
        if int(i) in markers:
            pieces += [tokenizer.decode(run, skip_special_tokens=True), markers[int(i)]]
            run = []
        else:
            run.append(int(i))
    pieces.append(tokenizer.decode(run, skip_special_tokens=True))
    return "".join(pieces)


def parse(text: str | None, record: Record) -> Prediction:
    """The prediction a reasoning-mode ``text`` gives for ``record`` (truncated reasoning and
    unparseable answers are parse failures)."""
    s = split(text)
    parsed = None if s.truncated else extract.parse_answer(s.answer, record)
    return Prediction(record.id, parsed, parsed is None, text)


def _opens_thinking(prompt: str) -> bool:
    """Whether the rendered prompt ends inside an open think block (templates that start the
    assistant turn with ``<think>``)."""
    return prompt.rfind(OPEN) > prompt.rfind(CLOSE)


def predict(decoder: Any, tokenizer: Any, records: Sequence[Record], *, prompt_config: PromptConfig,
            budget: int, answer_tokens: int, few_shot: Sequence[Record] = (), num_shots: int | None = None,
            instruction_language: str = "en", batch_size: int = 32, seed: int = 0,
            progress: bool = False) -> list[Prediction]:
    """One reasoning-mode ``Prediction`` per record (``decoder``: a ``decode.Decoder``)."""
    from globmed_jax.evaluation.scoring import prompt_ids
    from globmed_jax.models.tokenizer import eos_ids

    cfg = thinking_config(prompt_config)
    records = list(records)
    ids = prompt_ids(tokenizer, records, prompt_config=cfg, few_shot=few_shot, num_shots=num_shots,
                     instruction_language=instruction_language, seed=seed)
    outs = decoder.generate(ids, max_new_tokens=check_budget(budget) + int(answer_tokens),
                            eos_ids=eos_ids(tokenizer), batch_size=batch_size, progress=progress)
    preds = []
    for r, p, out in zip(records, ids, outs):
        text = decode(tokenizer, out)
        if _opens_thinking(tokenizer.decode(p)) and not text.lstrip().startswith(OPEN):
            text = OPEN + text
        preds.append(parse(text, r))
    return preds


# ------------------------------------------------------------------------------ runner hooks


def fingerprint_fields(config: Any, mode: str) -> dict[str, Any]:
    """``reasoning.budget`` for cells scored in reasoning mode."""
    return {"reasoning.budget": check_budget(config.reasoning_budget)} if mode == MODE else {}


def cell_fields(preds: Sequence[Prediction], mode: str) -> dict[str, Any]:
    """``reasoning_truncated_rate`` of a reasoning-mode cell (share of items whose think block
    never closed); {} in other modes."""
    if mode != MODE or not preds:
        return {}
    return {"reasoning_truncated_rate": float(np.mean([split(p.text).truncated for p in preds]))}


def row_stats(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """From predictions rows of reasoning-mode cells: ``truncated`` share and mean reasoning
    length in characters (``reasoning_chars``)."""
    splits = [split(r.get("text")) for r in rows]
    return {"truncated": float(np.mean([s.truncated for s in splits])) if splits else float("nan"),
            "reasoning_chars": float(np.mean([len(s.reasoning or "") for s in splits])) if splits else float("nan")}
