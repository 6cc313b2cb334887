"""Predict answers for Records with a local model: log-likelihood ranking or greedy generation.

``loglik`` (closed-form tasks): every valid choice (``answer_choices``: option letters, or the
option texts with ``PromptConfig(mcqa_answer="option_text")``; yes/no/maybe; NLI labels) is
scored by the SUMMED log-probability of its token ids appended to the prompt ids
(``tokenizer.encode(choice)``, exactly how training appends the target); the label of the argmax
(``choice_labels``: the letter for mcqa) is the prediction, so nothing is parsed and
``parse_failed`` is always False. When every
choice of a record is a single token, that sum is the next-token log-prob after the prompt and
one prefill per record suffices (``Decoder.score_next``); otherwise the prompt is prefilled
once into a KV cache and every choice runs only its own few tokens against it
(``Decoder.score_continuations``). The prediction uses no length normalization: a
model trained on the targets gives each its full likelihood (measured on the demo model:
per-token averaging of option texts was no better); the sums are kept
(``Prediction.scores``) and ``evaluation.formulations`` reports the per-character
``acc_norm`` from them.

``generate``: greedy decoding (``Decoder.generate``), stopping at the tokenizer's EOS or
an end-of-turn token (``models.tokenizer.END_TOKENS``: ``<|im_end|>``, Llama 3's ``<|eot_id|>``, ...); the text
is parsed by ``extract.parse_answer``. Unparseable answers have
``predicted=None, parse_failed=True`` and count as wrong. open_qa records are always generated
(there is nothing to rank); their prediction is the cleaned text.

Both modes go through a ``Backend`` (prompt TEXTS in, choice log-probabilities / generated
texts out): ``DecoderBackend`` is the local model above; ``evaluation.served.ServedBackend``
asks an OpenAI-compatible completions server for the same quantities, so a served model is
scored by the same code (``predict_with``).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any, Protocol, Sequence

import numpy as np

from globmed_jax.data.prompts import PromptConfig, answer_choices, choice_labels, gold_label
from globmed_jax.data.families import get_family
from globmed_jax.data.schema import Record
from globmed_jax.decode import Decoder
from globmed_jax.evaluation import extract, prompting
from globmed_jax.models.tokenizer import eos_ids

MODES = ("loglik", "generate")

__all__ = ["Prediction", "Backend", "DecoderBackend", "predict", "predict_with", "choice_logprobs",
           "prompt_ids", "prompt_texts", "is_correct", "MODES"]


@dataclasses.dataclass(frozen=True)
class Prediction:
    """``predicted``: the label / letter / open text, or None when ``parse_failed``. ``text``:
    the generated text (None in loglik mode). ``scores``: loglik mode only, the summed log-prob
    of each ``answer_choices`` entry in order (what ``predicted`` is the argmax of; the
    length-normalised ``acc_norm`` of ``evaluation.formulations`` is computed from it)."""

    record_id: str
    predicted: str | None
    parse_failed: bool
    text: str | None
    scores: tuple[float, ...] | None = None


# ------------------------------------------------------------------------------- prompts


def prompt_texts(tokenizer: Any, records: Sequence[Record], *, prompt_config: PromptConfig = PromptConfig(),
                 few_shot: Sequence[Record] = (), num_shots: int | None = None,
                 instruction_language: str = "en", seed: int = 0) -> list[str]:
    """Every record's rendered prompt (chat template + assistant header) as text."""
    out = []
    for r in records:
        cfg = prompting.config_for(r, prompt_config, instruction_language)
        shots = prompting.select_shots(r, few_shot, num_shots, seed) if few_shot else ()
        out.append(prompting.render(r, tokenizer, cfg, shots))
    return out


def prompt_ids(tokenizer: Any, records: Sequence[Record], *, prompt_config: PromptConfig = PromptConfig(),
               few_shot: Sequence[Record] = (), num_shots: int | None = None,
               instruction_language: str = "en", seed: int = 0) -> list[list[int]]:
    """Token ids of every record's prompt (chat template + assistant header)."""
    texts = prompt_texts(tokenizer, records, prompt_config=prompt_config, few_shot=few_shot, num_shots=num_shots,
                         instruction_language=instruction_language, seed=seed)
    return [list(tokenizer.encode(text, add_special_tokens=False)) for text in texts]


# ----------------------------------------------------------------------- choice scoring


def choice_logprobs(decoder: Decoder, tokenizer: Any, records: Sequence[Record], *,
                    prompts: Sequence[Sequence[int]] | None = None, prompt_config: PromptConfig = PromptConfig(),
                    batch_size: int = 32, progress: bool = False) -> list[np.ndarray]:
    """Per record, the summed log-prob of each ``answer_choices`` entry given its prompt (in
    choice order, ``[O]`` float64 each). ``prompts`` defaults to the zero-shot
    English-instruction prompt ids."""
    if prompts is None:
        prompts = prompt_ids(tokenizer, records, prompt_config=prompt_config)
    choices = [[list(tokenizer.encode(c, add_special_tokens=False)) for c in cs]
               for cs in _choice_texts(records, prompt_config)]
    return _score_ids(decoder, prompts, choices, batch_size=batch_size, progress=progress)


def _choice_texts(records: Sequence[Record], prompt_config: PromptConfig) -> list[list[str]]:
    """Per record, its ``answer_choices``; a record without a closed answer set is an error."""
    out = []
    for r in records:
        cs = answer_choices(r, prompt_config)
        if cs is None:
            raise ValueError(f"record {r.id}: family {r.family!r} has no closed answer set to score")
        out.append(list(cs))
    return out


def _score_ids(decoder: Decoder, prompts: Sequence[Sequence[int]], choices: Sequence[Sequence[Sequence[int]]], *,
               batch_size: int, progress: bool) -> list[np.ndarray]:
    """Per prompt, the summed log-prob of each of its choices' token ids (``[O]`` float64)."""
    scores: list[np.ndarray | None] = [None] * len(prompts)
    single = [i for i, cs in enumerate(choices) if all(len(c) == 1 for c in cs)]
    # Single-token choices: one prefill per record, grouped by option count (score_next
    # takes a rectangular [N, O] id table).
    by_count: dict[int, list[int]] = defaultdict(list)
    for i in single:
        by_count[len(choices[i])].append(i)
    for idx in by_count.values():
        table = np.asarray([[c[0] for c in choices[i]] for i in idx], np.int32)
        s = decoder.score_next([prompts[i] for i in idx], table, batch_size=batch_size, progress=progress)
        for row, i in enumerate(idx):
            scores[i] = np.asarray(s[row], np.float64)
    multi: dict[int, list[int]] = defaultdict(list)
    for i in range(len(prompts)):
        if scores[i] is None:
            multi[len(choices[i])].append(i)
    for idx in multi.values():
        sums = decoder.score_continuations([prompts[i] for i in idx], [choices[i] for i in idx],
                                           batch_size=batch_size, progress=progress)
        for row, i in enumerate(idx):
            scores[i] = sums[row]
    return scores  # type: ignore[return-value]


# -------------------------------------------------------------------------------- backends


class Backend(Protocol):
    """What scoring needs from a model, on prompt texts (rendered by ``prompt_texts``)."""

    kind: str  # "local" | "served": recorded in the leaderboard row

    def choice_logprobs(self, prompts: Sequence[str], choices: Sequence[Sequence[str]],
                        names: Sequence[str]) -> list[np.ndarray]:
        """Per prompt, ``[O]`` float64: the summed log-prob of each choice text as its
        continuation. ``names`` (record ids) go into error messages."""
        ...

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        """Greedy continuations, special tokens removed."""
        ...


@dataclasses.dataclass
class DecoderBackend:
    """A local model: the prompt text and each choice are tokenised SEPARATELY and their ids
    concatenated (how training appends the target)."""

    decoder: Decoder
    tokenizer: Any
    batch_size: int = 32
    progress: bool = False
    kind: str = "local"

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def choice_logprobs(self, prompts: Sequence[str], choices: Sequence[Sequence[str]],
                        names: Sequence[str] = ()) -> list[np.ndarray]:
        return _score_ids(self.decoder, [self._encode(p) for p in prompts],
                          [[self._encode(c) for c in cs] for cs in choices],
                          batch_size=self.batch_size, progress=self.progress)

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        outs = self.decoder.generate([self._encode(p) for p in prompts], max_new_tokens=max_new_tokens,
                                     eos_ids=eos_ids(self.tokenizer), batch_size=self.batch_size,
                                     progress=self.progress)
        return self.tokenizer.batch_decode(outs, skip_special_tokens=True)


# --------------------------------------------------------------------------------- predict


def predict(decoder: Decoder, tokenizer: Any, records: Sequence[Record], *, mode: str = "loglik",
            prompt_config: PromptConfig = PromptConfig(), few_shot: Sequence[Record] = (),
            num_shots: int | None = None, instruction_language: str = "en", batch_size: int = 32,
            max_new_tokens: int = 16, progress: bool = False, seed: int = 0) -> list[Prediction]:
    """One ``Prediction`` per record, in order.

    Args:
      decoder: the model's ``Decoder`` (its ``pad_id`` should be the tokenizer's,
        ``models.tokenizer.pad_id``).
      mode: "loglik" (rank the closed choices) or "generate" (greedy decode + parse).
      prompt_config: instructions/labels/system prompt (``data.prompts.PromptConfig``).
      few_shot: a pool of solved (train-split) records; each item gets ``num_shots`` of them
        (all qualifying ones when None) as earlier chat turns, chosen by
        ``prompting.select_shots`` (same task family; same dataset+language first).
      instruction_language: "en" or "native" (the item's language, ``prompting.INSTRUCTIONS``).
      batch_size: device batch (prompts per prefill / decode batch).
      max_new_tokens: generation budget (generate mode and open_qa).
    """
    backend = DecoderBackend(decoder, tokenizer, batch_size=batch_size, progress=progress)
    return predict_with(backend, tokenizer, records, mode=mode, prompt_config=prompt_config, few_shot=few_shot,
                        num_shots=num_shots, instruction_language=instruction_language,
                        max_new_tokens=max_new_tokens, seed=seed)


def predict_with(backend: Backend, tokenizer: Any, records: Sequence[Record], *, mode: str = "loglik",
                 prompt_config: PromptConfig = PromptConfig(), few_shot: Sequence[Record] = (),
                 num_shots: int | None = None, instruction_language: str = "en", max_new_tokens: int = 16,
                 seed: int = 0) -> list[Prediction]:
    """``predict`` through any ``Backend``; ``tokenizer`` renders the prompts (its chat template)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    records = list(records)
    texts = prompt_texts(tokenizer, records, prompt_config=prompt_config, few_shot=few_shot,
                         num_shots=num_shots, instruction_language=instruction_language, seed=seed)
    preds: list[Prediction | None] = [None] * len(records)
    ranked = [i for i, r in enumerate(records) if mode == "loglik" and answer_choices(r) is not None]
    if ranked:
        choices = _choice_texts([records[i] for i in ranked], prompt_config)
        scores = backend.choice_logprobs([texts[i] for i in ranked], choices, [records[i].id for i in ranked])
        for i, s in zip(ranked, scores):
            preds[i] = Prediction(records[i].id, choice_labels(records[i])[int(np.argmax(s))], False, None,
                                  tuple(float(x) for x in s))
    gen = [i for i in range(len(records)) if preds[i] is None]
    if gen:
        outs = backend.generate([texts[i] for i in gen], max_new_tokens)
        for i, text in zip(gen, outs):
            parsed = extract.parse_answer(text, records[i])
            preds[i] = Prediction(records[i].id, parsed, parsed is None, text)
    return preds  # type: ignore[return-value]


# --------------------------------------------------------------------------------- metrics


def is_correct(record: Record, prediction: Prediction) -> bool:
    """Closed-form tasks only: the prediction equals the gold target (parse failures are wrong)."""
    return prediction.predicted is not None and prediction.predicted == gold_label(record)
