"""Predict answers for Records with a local model: log-likelihood ranking or greedy generation.

``loglik`` (closed-form tasks): every valid choice (``answer_choices``: option letters, yes/no/
maybe, NLI labels) is scored by the SUMMED log-probability of its token ids appended to the
prompt ids (``tokenizer.encode(choice)``, exactly how training appends the target); the argmax
is the prediction, so nothing is parsed and ``parse_failed`` is always False. When every
choice of a record is a single token, that sum is the next-token log-prob after the prompt and
one prefill per record suffices (``decode.score_options``); otherwise each (record, choice)
sequence gets its own forward pass (right-padded, so causal attention keeps padding out of the
scored positions) and only the choice positions are projected to the vocabulary. No length
normalization: choices of one family are one or two tokens each.

``generate``: greedy decoding (``decode.greedy_generate``), stopping at the tokenizer's EOS or
``<|im_end|>``; the text is parsed by ``extract.parse_answer``. Unparseable answers have
``predicted=None, parse_failed=True`` and count as wrong. open_qa records are always generated
(there is nothing to rank); their prediction is the cleaned text.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from globmed_jax import decode
from globmed_jax.data.prompts import PromptConfig, answer_choices, answer_target
from globmed_jax.data.schema import Record
from globmed_jax.evaluation import extract, prompting
from globmed_jax.sharding import logical_to_spec

MODES = ("loglik", "generate")

__all__ = ["Prediction", "predict", "evaluate_records", "choice_logprobs", "prompt_ids", "is_correct",
           "summarize", "eos_ids", "MODES"]


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


def eos_ids(tokenizer: Any) -> list[int]:
    """The tokenizer's EOS plus ``<|im_end|>`` when the vocabulary has it (chat models end turns
    with it even when their EOS is another token)."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != getattr(tokenizer, "unk_token_id", None) and im_end >= 0:
        ids.add(im_end)
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
def _target_logprobs(graphdef, state, tokens, positions, targets):
    """tokens ``[B,T]`` (right-padded), positions/targets ``[B,C]`` -> ``log p(targets[b,c] |
    tokens[b, :positions[b,c]+1])`` ``[B,C]`` f32. Only the C gathered positions are projected."""
    model = nnx.merge(graphdef, state)
    tokens = model.shard.constrain(tokens, ("activation_batch", "activation_length"))
    hidden = model.forward(tokens, compute_logits=False).hidden
    picked = jnp.take_along_axis(hidden, positions[:, :, None], axis=1)
    logp = jax.nn.log_softmax(model.logits_from_hidden(picked).astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logp, targets[:, :, None], axis=-1)[..., 0]


def _sequence_logprobs(model, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]],
                       *, pad_id: int, batch_size: int, progress: bool) -> np.ndarray:
    """Summed log-prob of each continuation after its prompt, ``[N]`` float64."""
    n = len(prompts)
    out = np.zeros(n, np.float64)
    if n == 0:
        return out
    graphdef, state = nnx.split(model)
    shards = _batch_shards(model)
    lengths = [len(p) + len(c) for p, c in zip(prompts, continuations)]
    order = sorted(range(n), key=lambda i: -lengths[i])  # similar lengths share a bucket
    b = decode.batch_bucket(min(batch_size, n), shards)
    groups = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if progress:
        from tqdm.auto import tqdm

        groups = tqdm(groups, desc="loglik", unit="batch")
    for idx in groups:
        t = decode.bucket_length(max(lengths[i] for i in idx))
        c = decode.bucket_length(max(len(continuations[i]) for i in idx), 1)
        tokens = np.full((b, t), pad_id, np.int32)
        positions = np.zeros((b, c), np.int32)
        targets = np.zeros((b, c), np.int32)
        valid = np.zeros((b, c), bool)
        for row, i in enumerate(idx):
            p, cont = list(prompts[i]), list(continuations[i])
            tokens[row, :len(p) + len(cont)] = p + cont
            k = len(cont)
            positions[row, :k] = np.arange(len(p) - 1, len(p) - 1 + k)
            targets[row, :k] = cont
            valid[row, :k] = True
        logp = np.asarray(_target_logprobs(graphdef, state, tokens, positions, targets), np.float64)
        sums = np.where(valid, logp, 0.0).sum(axis=1)
        out[idx] = sums[:len(idx)]
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
        cs = answer_choices(r)
        if cs is None:
            raise ValueError(f"record {r.id}: task {r.task!r} has no closed answer set to score")
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
    multi = [i for i in range(len(records)) if scores[i] is None]
    flat = [(i, j) for i in multi for j in range(len(choices[i]))]
    if flat:
        sums = _sequence_logprobs(model, [prompts[i] for i, _ in flat], [choices[i][j] for i, j in flat],
                                  pad_id=pad_id, batch_size=batch_size, progress=progress)
        for i in multi:
            scores[i] = np.zeros(len(choices[i]), np.float64)
        for (i, j), v in zip(flat, sums):
            scores[i][j] = v
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
                                 batch_size=batch_size, progress=progress)
        for i, s in zip(ranked, scores):
            preds[i] = Prediction(records[i].id, answer_choices(records[i])[int(np.argmax(s))], False, None)
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
    return prediction.predicted is not None and prediction.predicted == answer_target(record)


def summarize(records: Sequence[Record], predictions: Sequence[Prediction]) -> dict[str, float]:
    """Flat metrics: ``accuracy`` and ``accuracy_<lang>`` over closed-form records,
    ``parse_failure_rate`` over all records, ``num_examples``; open_qa adds ``chrf`` and
    ``rouge_l`` (0-100) when present."""
    if len(records) != len(predictions):
        raise ValueError(f"{len(records)} records but {len(predictions)} predictions")
    out: dict[str, float] = {"num_examples": float(len(records))}
    closed = [(r, p) for r, p in zip(records, predictions) if r.task != "open_qa"]
    if closed:
        correct = [is_correct(r, p) for r, p in closed]
        out["accuracy"] = float(np.mean(correct))
        by_lang: dict[str, list[bool]] = defaultdict(list)
        for (r, _), c in zip(closed, correct):
            by_lang[r.language].append(c)
        for lang in sorted(by_lang):
            out[f"accuracy_{lang}"] = float(np.mean(by_lang[lang]))
    out["parse_failure_rate"] = float(np.mean([p.parse_failed for p in predictions])) if predictions else 0.0
    open_pairs = [(r, p) for r, p in zip(records, predictions) if r.task == "open_qa"]
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
