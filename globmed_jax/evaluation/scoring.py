"""Predict answers for Records with a local model: log-likelihood ranking or greedy generation.

``loglik`` (closed-form tasks): every valid choice (``answer_choices``: option letters, or the
option texts with ``PromptConfig(mcqa_answer="option_text")``; yes/no/maybe; NLI labels) is
scored by the SUMMED log-probability of its token ids appended to the prompt ids
(``tokenizer.encode(choice)``, exactly how training appends the target); the label of the argmax
(``choice_labels``: the letter for mcqa) is the prediction, so nothing is parsed and
``parse_failed`` is always False. When every
choice of a record is a single token, that sum is the next-token log-prob after the prompt and
one prefill per record suffices (``decode.score_options``); otherwise the prompt is prefilled
once into a KV cache and every choice runs only its own few tokens against it (shared prefix),
and only the choice positions are projected to the vocabulary. No length normalization: a
model trained on the targets gives each its full likelihood (measured on the demo model:
per-token averaging of option texts was no better).

``generate``: greedy decoding (``decode.greedy_generate``), stopping at the tokenizer's EOS or
an end-of-turn token (``END_TOKENS``: ``<|im_end|>``, Llama 3's ``<|eot_id|>``, ...); the text
is parsed by ``extract.parse_answer``. Unparseable answers have
``predicted=None, parse_failed=True`` and count as wrong. open_qa records are always generated
(there is nothing to rank); their prediction is the cleaned text.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import defaultdict
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from globmed_jax import decode
from globmed_jax.data.prompts import PromptConfig, answer_choices, choice_labels, gold_label
from globmed_jax.data.families import get_family
from globmed_jax.data.schema import Record
from globmed_jax.evaluation import extract, prompting
from globmed_jax.sharding import logical_to_spec

MODES = ("loglik", "generate")

__all__ = ["Prediction", "predict", "evaluate_records", "choice_logprobs", "prompt_ids", "is_correct",
           "summarize", "eos_ids", "END_TOKENS", "MODES"]


@dataclasses.dataclass(frozen=True)
class Prediction:
    """``predicted``: the label / letter / open text, or None when ``parse_failed``. ``text``:
    the generated text (None in loglik mode)."""

    record_id: str
    predicted: str | None
    parse_failed: bool
    text: str | None


# ------------------------------------------------------------------------------- prompts


def prompt_ids(tokenizer: Any, records: Sequence[Record], *, prompt_config: PromptConfig = PromptConfig(),
               few_shot: Sequence[Record] = (), num_shots: int | None = None,
               instruction_language: str = "en", seed: int = 0) -> list[list[int]]:
    """Token ids of every record's prompt (chat template + assistant header)."""
    out = []
    for r in records:
        cfg = prompting.config_for(r, prompt_config, instruction_language)
        shots = prompting.select_shots(r, few_shot, num_shots, seed) if few_shot else ()
        text = prompting.render(r, tokenizer, cfg, shots)
        out.append(list(tokenizer.encode(text, add_special_tokens=False)))
    return out


# End-of-turn / end-of-text tokens of the chat formats we support (ChatML: Qwen, SmolLM2;
# Llama 3), stopped at in addition to the tokenizer's own EOS, which for base checkpoints is the
# end-of-text token although the chat template ends turns with another one.
END_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end_of_text|>")


def eos_ids(tokenizer: Any) -> list[int]:
    """The tokenizer's EOS plus every ``END_TOKENS`` entry its vocabulary has."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab()
    ids.update(int(vocab[t]) for t in END_TOKENS if t in vocab)
    return sorted(ids)


def _pad_id(tokenizer: Any) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    return int(pad) if pad is not None else 0


# ----------------------------------------------------------------------- full choice scoring


def _batch_shards(model) -> int:
    """How many ways the model's mesh splits the batch (the batch must be a multiple)."""
    mesh = model.shard.mesh
    if mesh is None:
        return 1
    entry = logical_to_spec(("activation_batch",), model.shard.rules)[0]
    axes = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
    return math.prod(mesh.shape[a] for a in axes)


@functools.partial(jax.jit, static_argnums=(0,))
def _prefix_choice_logprobs(graphdef, state, tokens, mask, choices, choice_mask):
    """Summed log-probs of several continuations sharing one prompt, ``[B,O]`` f32.

    tokens, mask ``[B,P]`` (left-padded prompt); choices, choice_mask ``[B,O,C]`` (right-padded
    continuation ids). The prompt is prefilled ONCE into a KV cache; each option then runs only
    its C tokens against that cache (the cache is a value, so every option starts from the same
    prefix). Token 0 of an option is scored by the prefill's last position, token k by the
    option's own position k-1."""
    model = nnx.merge(graphdef, state)
    tokens = model.shard.constrain(tokens, ("activation_batch", "activation_length"))
    mask = model.shard.constrain(mask, ("activation_batch", "activation_length"))
    b, p = tokens.shape
    c = choices.shape[2]
    out = model.forward(tokens, attention_mask=mask, cache=model.init_cache(b, p + c), compute_logits=False)
    first = jax.nn.log_softmax(model.logits_from_hidden(out.hidden[:, -1]).astype(jnp.float32), axis=-1)
    sums = []
    for o in range(choices.shape[1]):  # O <= 10: unrolled
        ids, valid = choices[:, o], choice_mask[:, o]
        lp0 = jnp.take_along_axis(first, ids[:, :1], axis=1)  # [B,1]
        if c > 1:
            res = model.forward(ids, attention_mask=valid, cache=out.cache, compute_logits=False)
            logp = jax.nn.log_softmax(model.logits_from_hidden(res.hidden[:, :-1]).astype(jnp.float32), axis=-1)
            lp = jnp.concatenate([lp0, jnp.take_along_axis(logp, ids[:, 1:, None], axis=-1)[..., 0]], axis=1)
        else:
            lp = lp0
        sums.append(jnp.sum(jnp.where(valid, lp, 0.0), axis=1))
    return jnp.stack(sums, axis=1)


def _shared_prefix_logprobs(model, prompts: Sequence[Sequence[int]], choices: Sequence[Sequence[Sequence[int]]],
                            *, pad_id: int, batch_size: int, progress: bool) -> np.ndarray:
    """``[N, O]`` summed log-prob of each of the O continuations of every prompt (all prompts
    have O options)."""
    n, n_opt = len(prompts), len(choices[0])
    out = np.zeros((n, n_opt), np.float64)
    graphdef, state = nnx.split(model)
    b = decode.batch_bucket(min(batch_size, n), _batch_shards(model))
    order = sorted(range(n), key=lambda i: -len(prompts[i]))  # similar lengths share a bucket
    groups = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if progress:
        from tqdm.auto import tqdm

        groups = tqdm(groups, desc="loglik", unit="batch")
    for idx in groups:
        p = decode.bucket_length(max(len(prompts[i]) for i in idx))
        c = decode.bucket_length(max(len(x) for i in idx for x in choices[i]), 1)
        tokens = np.full((b, p), pad_id, np.int32)
        mask = np.zeros((b, p), np.int32)
        ids = np.full((b, n_opt, c), pad_id, np.int32)
        valid = np.zeros((b, n_opt, c), bool)
        for row, i in enumerate(idx):
            tokens[row, p - len(prompts[i]):] = prompts[i]
            mask[row, p - len(prompts[i]):] = 1
            for o, x in enumerate(choices[i]):
                ids[row, o, :len(x)] = x
                valid[row, o, :len(x)] = True
        mask[len(idx):, -1] = 1  # batch-padding rows: one dummy token, so no row is empty
        sums = _prefix_choice_logprobs(graphdef, state, tokens, mask, ids, valid)
        out[idx] = np.asarray(sums, np.float64)[:len(idx)]
    return out


def choice_logprobs(model, tokenizer: Any, records: Sequence[Record], *,
                    prompts: Sequence[Sequence[int]] | None = None, prompt_config: PromptConfig = PromptConfig(),
                    batch_size: int = 32, progress: bool = False) -> list[np.ndarray]:
    """Per record, the summed log-prob of each ``answer_choices`` entry given its prompt (in
    choice order). ``prompts`` defaults to the zero-shot English-instruction prompt ids."""
    if prompts is None:
        prompts = prompt_ids(tokenizer, records, prompt_config=prompt_config)
    choices = []
    for r in records:
        cs = answer_choices(r, prompt_config)
        if cs is None:
            raise ValueError(f"record {r.id}: family {r.family!r} has no closed answer set to score")
        choices.append([list(tokenizer.encode(c, add_special_tokens=False)) for c in cs])
    pad_id = _pad_id(tokenizer)
    scores: list[np.ndarray | None] = [None] * len(records)
    single = [i for i, cs in enumerate(choices) if all(len(c) == 1 for c in cs)]
    # Single-token choices: one prefill per record, grouped by option count (score_options
    # takes a rectangular [N, O] id table).
    by_count: dict[int, list[int]] = defaultdict(list)
    for i in single:
        by_count[len(choices[i])].append(i)
    for idx in by_count.values():
        table = np.asarray([[c[0] for c in choices[i]] for i in idx], np.int32)
        s = decode.score_options(model, [prompts[i] for i in idx], table, pad_id=pad_id,
                                 batch_size=batch_size, progress=progress)
        for row, i in enumerate(idx):
            scores[i] = np.asarray(s[row], np.float64)
    multi: dict[int, list[int]] = defaultdict(list)
    for i in range(len(records)):
        if scores[i] is None:
            multi[len(choices[i])].append(i)
    for idx in multi.values():
        sums = _shared_prefix_logprobs(model, [prompts[i] for i in idx], [choices[i] for i in idx],
                                       pad_id=pad_id, batch_size=batch_size, progress=progress)
        for row, i in enumerate(idx):
            scores[i] = sums[row]
    return scores  # type: ignore[return-value]


# --------------------------------------------------------------------------------- predict


def predict(model, tokenizer: Any, records: Sequence[Record], *, mode: str = "loglik",
            prompt_config: PromptConfig = PromptConfig(), few_shot: Sequence[Record] = (),
            num_shots: int | None = None, instruction_language: str = "en", batch_size: int = 32,
            max_new_tokens: int = 16, progress: bool = False, seed: int = 0) -> list[Prediction]:
    """One ``Prediction`` per record, in order.

    Args:
      mode: "loglik" (rank the closed choices) or "generate" (greedy decode + parse).
      prompt_config: instructions/labels/system prompt (``data.prompts.PromptConfig``).
      few_shot: a pool of solved (train-split) records; each item gets ``num_shots`` of them
        (all qualifying ones when None) as earlier chat turns, chosen by
        ``prompting.select_shots`` (same task family; same dataset+language first).
      instruction_language: "en" or "native" (the item's language, ``prompting.INSTRUCTIONS``).
      batch_size: device batch (prompts per prefill / decode batch).
      max_new_tokens: generation budget (generate mode and open_qa).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    records = list(records)
    ids = prompt_ids(tokenizer, records, prompt_config=prompt_config, few_shot=few_shot,
                     num_shots=num_shots, instruction_language=instruction_language, seed=seed)
    preds: list[Prediction | None] = [None] * len(records)
    ranked = [i for i, r in enumerate(records) if mode == "loglik" and answer_choices(r) is not None]
    if ranked:
        scores = choice_logprobs(model, tokenizer, [records[i] for i in ranked], prompts=[ids[i] for i in ranked],
                                 prompt_config=prompt_config, batch_size=batch_size, progress=progress)
        for i, s in zip(ranked, scores):
            preds[i] = Prediction(records[i].id, choice_labels(records[i])[int(np.argmax(s))], False, None)
    gen = [i for i in range(len(records)) if preds[i] is None]
    if gen:
        outs = decode.greedy_generate(model, [ids[i] for i in gen], max_new_tokens=max_new_tokens,
                                      eos_ids=eos_ids(tokenizer), pad_id=_pad_id(tokenizer),
                                      batch_size=batch_size, progress=progress)
        texts = tokenizer.batch_decode(outs, skip_special_tokens=True)
        for i, text in zip(gen, texts):
            parsed = extract.parse_answer(text, records[i])
            preds[i] = Prediction(records[i].id, parsed, parsed is None, text)
    return preds  # type: ignore[return-value]


# --------------------------------------------------------------------------------- metrics


def is_correct(record: Record, prediction: Prediction) -> bool:
    """Closed-form tasks only: the prediction equals the gold target (parse failures are wrong)."""
    return prediction.predicted is not None and prediction.predicted == gold_label(record)


def summarize(records: Sequence[Record], predictions: Sequence[Prediction]) -> dict[str, float]:
    """Flat metrics: ``accuracy``, ``accuracy_<lang>`` and ``accuracy/<task>/<lang>`` over
    closed-form records, ``parse_failure_rate`` over all records, ``num_examples``; open_qa adds
    ``chrf`` and ``rouge_l`` (0-100) when present."""
    if len(records) != len(predictions):
        raise ValueError(f"{len(records)} records but {len(predictions)} predictions")
    out: dict[str, float] = {"num_examples": float(len(records))}
    closed = [(r, p) for r, p in zip(records, predictions) if get_family(r.family).closed]
    if closed:
        correct = [is_correct(r, p) for r, p in closed]
        out["accuracy"] = float(np.mean(correct))
        by_lang: dict[str, list[bool]] = defaultdict(list)
        by_task_lang: dict[tuple[str, str], list[bool]] = defaultdict(list)
        for (r, _), c in zip(closed, correct):
            by_lang[r.language].append(c)
            by_task_lang[(r.family, r.language)].append(c)
        for lang in sorted(by_lang):
            out[f"accuracy_{lang}"] = float(np.mean(by_lang[lang]))
        for (task, lang), cs in sorted(by_task_lang.items()):
            out[f"accuracy/{task}/{lang}"] = float(np.mean(cs))
    out["parse_failure_rate"] = float(np.mean([p.parse_failed for p in predictions])) if predictions else 0.0
    open_pairs = [(r, p) for r, p in zip(records, predictions) if not get_family(r.family).closed]
    if open_pairs:
        from globmed_jax.evaluation import metrics

        hyps = [p.predicted or "" for _, p in open_pairs]
        refs = [r.answer for r, _ in open_pairs]
        out["chrf"] = metrics.chrf(hyps, refs)
        out["rouge_l"] = metrics.rouge_l(hyps, refs)
    return out


def evaluate_records(model, tokenizer: Any, records: Sequence[Record], *, mode: str = "loglik",
                     **predict_kwargs: Any) -> dict[str, float]:
    """``summarize(records, predict(...))``: flat metrics for training logs."""
    records = list(records)
    return summarize(records, predict(model, tokenizer, records, mode=mode, **predict_kwargs))
