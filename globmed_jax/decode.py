"""One ``Decoder`` per model: batched greedy generation and scoring over a preallocated KV cache.

``Decoder.generate`` runs, per batch of prompts:

1. a jitted *prefill* of the LEFT-padded batch that fills the KV cache and picks the first token;
2. ONE jitted ``jax.lax.while_loop`` that feeds back one token per step until every row has
   emitted an EOS or ``max_new_tokens`` tokens exist (finished rows keep emitting ``pad_id``).

``Decoder.score_next`` returns next-token log-probs of candidate tokens after each prompt (one
prefill); ``Decoder.score_continuations`` the summed log-probs of multi-token continuations,
prefilling the shared prompt once and running each continuation against that cache.

Shapes are bucketed so a whole run compiles a handful of times, not once per batch: the prompt
length and the cache length are rounded up to powers of two (at least ``MIN_LENGTH_BUCKET``), and
the batch to a power of two that the mesh's batch shards divide. Every run uses one batch
bucket (the last, short batch is padded up to it). Functions are compiled ahead of time
(``jit(...).lower(...).compile()``) and kept by the decoder, keyed by the model's graph, its
parameter shapes/dtypes/shardings and the bucket shapes; ``Decoder.compile_count`` says how many
compilations happened, which is what the tests use to check bucketing.

On a mesh (a model loaded with ``mesh=...``) the batch is sharded over the axes the rules table
maps ``activation_batch`` to and the heads/vocabulary as the model itself constrains them; this
module only uses logical axis names.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from globmed_jax.models.transformer import CACHE_AXES, CausalLM, KVCache
from globmed_jax.sharding import logical_to_spec

MIN_LENGTH_BUCKET = 16
DEFAULT_BATCH_SIZE = 32

_TOKEN_AXES = ("activation_batch", "activation_length")
# Layers of a decode step run unrolled: with the cache carried in place, the unrolled step moves
# fewer bytes than the scanned one (TPU AOT figures in docs/performance.md). Prefill and scoring
# keep the model's own setting.
DECODE_SCAN_LAYERS = False

__all__ = ["Decoder", "bucket_length", "batch_bucket", "MIN_LENGTH_BUCKET", "DEFAULT_BATCH_SIZE"]


# ----------------------------------------------------------------------------------- buckets


def bucket_length(n: int, minimum: int = MIN_LENGTH_BUCKET) -> int:
    """The smallest power of two ``>= max(n, minimum)``."""
    n = max(int(n), int(minimum), 1)
    return 1 << (n - 1).bit_length()


def _batch_shards(model: CausalLM) -> int:
    """How many ways the model's mesh splits ``activation_batch`` (1 without a mesh)."""
    mesh = model.shard.mesh
    if mesh is None:
        return 1
    entry = logical_to_spec(("activation_batch",), model.shard.rules)[0]
    axes = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
    return math.prod(mesh.shape[a] for a in axes)


def batch_bucket(n: int, shards: int = 1) -> int:
    """A power of two ``>= n``, rounded up to a multiple of ``shards`` so the batch divides the
    mesh's batch axes (otherwise the sharding helpers would replicate the batch)."""
    b = bucket_length(n, 1)
    return -(-b // shards) * shards


# --------------------------------------------------------------------------- compile keys


def _signature(tree: Any) -> tuple:
    """Hashable shape/dtype/sharding summary of a pytree of arrays (part of the cache key, since a
    compiled executable only accepts exactly those)."""
    leaves, treedef = jax.tree.flatten(tree)
    return (treedef,) + tuple(
        (tuple(x.shape), str(x.dtype), getattr(x, "sharding", None)) for x in leaves)


@dataclasses.dataclass(frozen=True)
class _Split:
    """A model split once per call: the static graph, the parameters and the cache-key part."""

    graphdef: Any
    state: Any
    key: tuple
    batch_shards: int


def _split(model: CausalLM) -> _Split:
    graphdef, state = nnx.split(model)
    return _Split(graphdef, state, (graphdef, _signature(state)), _batch_shards(model))


# -------------------------------------------------------------------------- traced bodies


def _last_logits(model: CausalLM, hidden: jax.Array) -> jax.Array:
    """``hidden [B,T,D]`` -> fp32 logits of the last position ``[B,V]``.

    Only the last position is projected: with left padding it is every row's final prompt
    token, and skipping the ``[B,T,V]`` logits is most of the prefill's memory.
    """
    logits = model.logits_from_hidden(hidden[:, -1])
    return model.shard.constrain(logits, ("activation_batch", "activation_vocab"))


def _prefill(graphdef, state, tokens, mask, *, cache_length: int):
    """tokens, mask ``[B,P]`` (left-padded) -> (filled ``KVCache`` of length ``cache_length``,
    greedy next token ``[B]`` int32)."""
    model = nnx.merge(graphdef, state)
    tokens = model.shard.constrain(tokens, _TOKEN_AXES)
    mask = model.shard.constrain(mask, _TOKEN_AXES)
    cache = model.init_cache(tokens.shape[0], cache_length)
    out = model.forward(tokens, attention_mask=mask, cache=cache, compute_logits=False, fresh_cache=True)
    first = jnp.argmax(_last_logits(model, out.hidden), axis=-1).astype(jnp.int32)
    return out.cache, first


def decode_step(model: CausalLM, cache: KVCache, last: jax.Array,
                scan_layers: bool | None = DECODE_SCAN_LAYERS) -> tuple[jax.Array, KVCache]:
    """One greedy step: ``last [B]`` int32 -> (next token ``[B]`` int32, the cache with ``last``
    written at ``cache.index``). The body of ``_decode_loop``; ``scripts/aot_report.py`` compiles
    it alone (cache donated) to count the bytes one step moves."""
    shard = model.shard
    tokens = shard.constrain(last[:, None], _TOKEN_AXES)
    res = model.forward(tokens, cache=cache, compute_logits=False, scan_layers=scan_layers)
    tok = jnp.argmax(_last_logits(model, res.hidden), axis=-1).astype(jnp.int32)
    # Keep the carried cache on its own sharding so the loop does not reshard every step.
    new = res.cache
    new = dataclasses.replace(new, k=shard.constrain(new.k, CACHE_AXES), v=shard.constrain(new.v, CACHE_AXES))
    return tok, new


def _decode_loop(graphdef, state, cache: KVCache, first, live, eos, max_new, pad_id, *, out_length: int):
    """The greedy while loop.

    Args:
      cache: the prefilled cache (donated).
      first: ``[B]`` int32, token chosen by the prefill.
      live: ``[B]`` bool, False for batch-padding rows (they start out done).
      eos: ``[E]`` int32 EOS ids (E may be 0). max_new, pad_id: int32 scalars (traced, so a
        different ``max_new_tokens`` within the same cache bucket reuses the executable).

    Returns:
      (tokens ``[B, out_length]`` int32: new tokens, EOS included, pad after; steps: int32 number
      of tokens produced, the loop's trip count + 1; the final cache, returned only so that the
      donated input buffers can be reused in place instead of copied into the loop).
    """
    model = nnx.merge(graphdef, state)
    b = first.shape[0]

    def is_eos(tok):
        return jnp.any(tok[:, None] == eos[None, :], axis=1)

    first = jnp.where(live, first, pad_id)
    done = ~live | is_eos(first)
    out = jnp.full((b, out_length), pad_id, jnp.int32).at[:, 0].set(first)

    def cond(carry):
        step, _, _, done, _ = carry
        return (step < max_new) & ~jnp.all(done)

    def body(carry):
        step, cache, last, done, out = carry
        tok, new = decode_step(model, cache, last)
        tok = jnp.where(done, pad_id, tok)
        out = jax.lax.dynamic_update_slice(out, tok[:, None], (0, step))
        return step + 1, new, tok, done | is_eos(tok), out

    step, cache, _, _, out = jax.lax.while_loop(cond, body, (jnp.int32(1), cache, first, done, out))
    return out, step, cache


def _score(graphdef, state, tokens, mask, option_ids):
    """tokens, mask ``[B,P]`` (left-padded), option_ids ``[B,O]`` -> next-token log-probs ``[B,O]``."""
    model = nnx.merge(graphdef, state)
    tokens = model.shard.constrain(tokens, _TOKEN_AXES)
    mask = model.shard.constrain(mask, _TOKEN_AXES)
    out = model.forward(tokens, attention_mask=mask, compute_logits=False)
    logp = jax.nn.log_softmax(_last_logits(model, out.hidden), axis=-1)
    return jnp.take_along_axis(logp, option_ids, axis=1)


def _continuations(graphdef, state, tokens, mask, choices, choice_mask):
    """Summed log-probs of several continuations sharing one prompt, ``[B,O]`` f32.

    tokens, mask ``[B,P]`` (left-padded prompt); choices, choice_mask ``[B,O,C]`` (right-padded
    continuation ids). The prompt is prefilled ONCE into a KV cache; each option then runs only
    its C tokens against that cache (the cache is a value, so every option starts from the same
    prefix). Token 0 of an option is scored by the prefill's last position, token k by the
    option's own position k-1, and only those positions are projected to the vocabulary."""
    model = nnx.merge(graphdef, state)
    tokens = model.shard.constrain(tokens, _TOKEN_AXES)
    mask = model.shard.constrain(mask, _TOKEN_AXES)
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


# ------------------------------------------------------------------------------ host side


def _left_pad(prompts: Sequence[Sequence[int]], batch: int, length: int, pad_id: int):
    """-> tokens ``[batch, length]`` int32 and mask ``[batch, length]`` int32 (1 = real); rows past
    ``len(prompts)`` are all padding."""
    tokens = np.full((batch, length), pad_id, np.int32)
    mask = np.zeros((batch, length), np.int32)
    for i, p in enumerate(prompts):
        if len(p):
            tokens[i, length - len(p):] = p
            mask[i, length - len(p):] = 1
    return tokens, mask


def _check_prompts(prompts: Sequence[Sequence[int]], vocab_size: int) -> list[list[int]]:
    out = []
    for i, p in enumerate(prompts):
        p = [int(t) for t in p]
        if not p:
            raise ValueError(f"prompt {i} is empty; every prompt needs at least one token")
        bad = [t for t in p if not 0 <= t < vocab_size]
        if bad:
            raise ValueError(f"prompt {i} has token ids outside [0, {vocab_size}): {bad[:5]}")
        out.append(p)
    return out


def _batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Prompt indices grouped into batches, longest first (less padding; a too-long batch
    fails first)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _progress(iterable, total: int, desc: str, progress: bool | None):
    show = total > 1 if progress is None else progress
    if not show:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="batch")


def _eos_array(eos_ids: int | Sequence[int] | None) -> np.ndarray:
    if eos_ids is None:
        return np.zeros((0,), np.int32)
    if isinstance(eos_ids, (int, np.integer)):
        return np.asarray([eos_ids], np.int32)
    return np.asarray(sorted({int(e) for e in eos_ids}), np.int32).reshape(-1)


def _cut_at_eos(row: np.ndarray, eos: np.ndarray) -> list[int]:
    hits = np.flatnonzero(np.isin(row, eos)) if eos.size else ()
    end = int(hits[0]) if len(hits) else len(row)
    return [int(t) for t in row[:end]]


def _cut_at_stop_strings(tokens: list[int], stop_strings: Sequence[str], tokenizer) -> list[int]:
    """The longest token prefix whose decoded text ends before the first stop string begins.

    A token whose text straddles the stop string's start is dropped entirely (token ids cannot be
    split), so the returned tokens never decode to any part of a stop string.
    """
    text = tokenizer.decode(tokens)
    starts = [i for i in (text.find(s) for s in stop_strings if s) if i >= 0]
    if not starts:
        return tokens
    cut = min(starts)
    prefixes = tokenizer.batch_decode([tokens[:k] for k in range(1, len(tokens) + 1)])
    keep = 0
    for k, prefix in enumerate(prefixes, start=1):
        if len(prefix) > cut:
            break
        keep = k
    return tokens[:keep]


# ---------------------------------------------------------------------------------- decoder


class Decoder:
    """Greedy generation, next-token scoring and shared-prefix continuation scoring of one model.

    The decoder owns its compiled executables (keyed by the model's graph, its parameter
    shapes/dtypes/shardings and the bucket shapes) and counts them in ``compile_count``. The
    model may be replaced (``decoder.model = new``, e.g. the training loop's fresh merge at every
    evaluation): a model of the same structure reuses the executables.

    Args:
      model: a ``CausalLM`` (sharded or not).
      pad_id: token used to left-pad prompts and fill finished rows (never attended to).
      batch_size: prompts per device batch (default ``DEFAULT_BATCH_SIZE``); every method takes
        an override.
    """

    def __init__(self, model: CausalLM, *, pad_id: int = 0, batch_size: int = DEFAULT_BATCH_SIZE):
        self.model = model
        self.pad_id = int(pad_id)
        self.batch_size = self._check_batch_size(batch_size)
        self.compile_count = 0
        self._executables: dict[tuple, Any] = {}

    def clear_cache(self) -> None:
        """Drops every compiled function (e.g. to free memory after a sweep) and resets the count."""
        self._executables.clear()
        self.compile_count = 0

    # ----------------------------------------------------------------------- internals

    @staticmethod
    def _check_batch_size(batch_size: int) -> int:
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return batch_size

    def _batch_size(self, batch_size: int | None) -> int:
        return self.batch_size if batch_size is None else self._check_batch_size(batch_size)

    def _compiled(self, key: tuple, build: Callable[[], Callable], *example_args: Any) -> Callable:
        """The executable for ``key``, compiling ``build()`` on ``example_args`` on first use."""
        fn = self._executables.get(key)
        if fn is None:
            fn = build().lower(*example_args).compile()
            self._executables[key] = fn
            self.compile_count += 1
        return fn

    def _generate_batch(self, sp: _Split, prompts: list[list[int]], b: int, max_new: int, eos: np.ndarray,
                        timings: dict | None = None) -> np.ndarray:
        """Greedy tokens ``[len(prompts), max_new]`` for one batch (EOS included, pad after)."""
        pad_id = self.pad_id
        p = bucket_length(max(len(x) for x in prompts))
        s = bucket_length(p + max_new)
        tokens, mask = _left_pad(prompts, b, p, pad_id)
        live = np.arange(b) < len(prompts)
        prefill = self._compiled(
            ("prefill",) + sp.key + (b, p, s),
            lambda: jax.jit(functools.partial(_prefill, sp.graphdef, cache_length=s)),
            sp.state, tokens, mask)
        t0 = time.perf_counter()
        cache, first = prefill(sp.state, tokens, mask)
        if timings is not None:
            jax.block_until_ready(first)
            t1 = time.perf_counter()
        scalars = (np.int32(max_new), np.int32(pad_id))
        loop = self._compiled(
            ("decode",) + sp.key + (b, p, s, eos.shape[0]),
            lambda: jax.jit(functools.partial(_decode_loop, sp.graphdef, out_length=s - p),
                            donate_argnums=(1,)),
            sp.state, cache, first, live, eos, *scalars)
        out, steps, _ = loop(sp.state, cache, first, live, eos, *scalars)
        out = np.asarray(out)
        if timings is not None:
            t2 = time.perf_counter()
            timings.update(prefill_s=t1 - t0, decode_s=t2 - t1, steps=int(steps),
                           batch_bucket=b, prompt_bucket=p, cache_bucket=s)
        return out[:len(prompts), :max_new]

    # ------------------------------------------------------------------------ public API

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        eos_ids: int | Sequence[int] | None,
        stop_strings: Sequence[str] | None = None,
        tokenizer: Any = None,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> list[list[int]]:
        """Greedy (argmax) continuation of every prompt.

        Args:
          prompts: ``N`` token-id lists of any (non-zero) lengths.
          max_new_tokens: at most this many new tokens per prompt.
          eos_ids: one id or several; a row stops after emitting any of them. ``None`` or ``()``
            disables EOS stopping.
          stop_strings: optional strings; needs ``tokenizer``. Applied POST-HOC: generation still
            runs until EOS / ``max_new_tokens``, then each result is truncated before the first
            token whose decoded text reaches into the earliest stop string (excluded).
          tokenizer: a Hugging Face tokenizer (``decode``/``batch_decode``), for ``stop_strings``.
          batch_size: prompts per device batch. Prompts are sorted by length into batches; every
            batch is padded to the same power-of-two batch bucket.
          progress: tqdm bar over batches; ``None`` shows it when there is more than one batch.

        Returns:
          ``N`` lists (in the order of ``prompts``) of new token ids, ending before the first EOS.
        """
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if stop_strings and tokenizer is None:
            raise ValueError("stop_strings need a tokenizer to decode the generated tokens")
        batch_size = self._batch_size(batch_size)
        prompts = _check_prompts(prompts, self.model.cfg.vocab_size)
        if not prompts or max_new_tokens == 0:
            return [[] for _ in prompts]
        eos = _eos_array(eos_ids)
        sp = _split(self.model)
        b = batch_bucket(min(batch_size, len(prompts)), sp.batch_shards)
        results: list[list[int]] = [[] for _ in prompts]
        groups = _batches([len(p) for p in prompts], batch_size)
        for idx in _progress(groups, len(groups), "generate", progress):
            out = self._generate_batch(sp, [prompts[i] for i in idx], b, max_new_tokens, eos)
            for row, i in zip(out, idx):
                results[i] = _cut_at_eos(row, eos)
        if stop_strings:
            results = [_cut_at_stop_strings(r, stop_strings, tokenizer) for r in results]
        return results

    def score_next(
        self,
        prompts: Sequence[Sequence[int]],
        option_token_ids: Sequence[int] | Sequence[Sequence[int]] | np.ndarray,
        *,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> np.ndarray:
        """Next-token log-probabilities of candidate tokens after each prompt.

        Args:
          prompts: ``N`` token-id lists.
          option_token_ids: ``[O]`` ids shared by every prompt (e.g. the tokens of "A".."D"), or
            ``[N, O]`` per prompt.
          batch_size, progress: as in ``generate``.

        Returns:
          ``[N, O]`` float32: ``log_softmax(logits at the last prompt token)[option]``.
        """
        batch_size = self._batch_size(batch_size)
        vocab = self.model.cfg.vocab_size
        prompts = _check_prompts(prompts, vocab)
        options = np.asarray(option_token_ids, np.int32)
        if options.ndim == 1:
            options = np.broadcast_to(options, (len(prompts), options.shape[0]))
        if options.ndim != 2 or options.shape[0] != len(prompts):
            raise ValueError(f"option_token_ids must be [O] or [N={len(prompts)}, O], got {options.shape}")
        if options.size and not ((options >= 0) & (options < vocab)).all():
            raise ValueError(f"option_token_ids must lie in [0, {vocab})")
        n_opt = options.shape[1]
        scores = np.zeros((len(prompts), n_opt), np.float32)
        if not prompts or n_opt == 0:
            return scores
        sp = _split(self.model)
        b = batch_bucket(min(batch_size, len(prompts)), sp.batch_shards)
        groups = _batches([len(p) for p in prompts], batch_size)
        for idx in _progress(groups, len(groups), "score", progress):
            p = bucket_length(max(len(prompts[i]) for i in idx))
            tokens, mask = _left_pad([prompts[i] for i in idx], b, p, self.pad_id)
            opts = np.zeros((b, n_opt), np.int32)
            opts[:len(idx)] = options[idx]
            fn = self._compiled(("score",) + sp.key + (b, p, n_opt),
                                lambda: jax.jit(functools.partial(_score, sp.graphdef)),
                                sp.state, tokens, mask, opts)
            scores[idx] = np.asarray(fn(sp.state, tokens, mask, opts))[:len(idx)]
        return scores

    def score_continuations(
        self,
        prompts: Sequence[Sequence[int]],
        continuations: Sequence[Sequence[Sequence[int]]],
        *,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> np.ndarray:
        """Summed log-probability of each continuation after its prompt (shared-prefix scoring).

        Args:
          prompts: ``N`` token-id lists.
          continuations: per prompt, the same number ``O`` of non-empty token-id lists.
          batch_size, progress: as in ``generate``.

        Returns:
          ``[N, O]`` float64: ``sum_k log p(continuation[k] | prompt, continuation[:k])``.
        """
        batch_size = self._batch_size(batch_size)
        prompts = _check_prompts(prompts, self.model.cfg.vocab_size)
        n = len(prompts)
        if len(continuations) != n:
            raise ValueError(f"{n} prompts but {len(continuations)} continuation lists")
        n_opt = len(continuations[0]) if n else 0
        if any(len(cs) != n_opt for cs in continuations):
            raise ValueError("every prompt needs the same number of continuations")
        out = np.zeros((n, n_opt), np.float64)
        if not n or n_opt == 0:
            return out
        sp = _split(self.model)
        b = batch_bucket(min(batch_size, n), sp.batch_shards)
        groups = _batches([len(p) for p in prompts], batch_size)
        for idx in _progress(groups, len(groups), "loglik", progress):
            p = bucket_length(max(len(prompts[i]) for i in idx))
            c = bucket_length(max(len(x) for i in idx for x in continuations[i]), 1)
            tokens, mask = _left_pad([prompts[i] for i in idx], b, p, self.pad_id)
            mask[len(idx):, -1] = 1  # batch-padding rows: one dummy token, so no row is empty
            ids = np.full((b, n_opt, c), self.pad_id, np.int32)
            valid = np.zeros((b, n_opt, c), bool)
            for row, i in enumerate(idx):
                for o, x in enumerate(continuations[i]):
                    ids[row, o, :len(x)] = x
                    valid[row, o, :len(x)] = True
            fn = self._compiled(("continuations",) + sp.key + (b, p, n_opt, c),
                                lambda: jax.jit(functools.partial(_continuations, sp.graphdef)),
                                sp.state, tokens, mask, ids, valid)
            out[idx] = np.asarray(fn(sp.state, tokens, mask, ids, valid), np.float64)[:len(idx)]
        return out

    def timed_generate(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        eos_ids: int | Sequence[int] | None = None,
    ) -> tuple[np.ndarray, dict[str, float]]:
        """One batch of greedy decoding with timings (for benchmarks).

        Returns ``(tokens [N, max_new_tokens] int32 (EOS and pad not stripped), stats)`` where
        stats has ``prefill_s``, ``decode_s`` (the while loop, incl. fetching the result),
        ``steps`` (tokens produced per row, the first from the prefill), the three buckets,
        ``warmup_s`` (the untimed first run, compilation included) and ``compiles`` (new
        executables it built).
        """
        prompts = _check_prompts(prompts, self.model.cfg.vocab_size)
        sp = _split(self.model)
        b = batch_bucket(len(prompts), sp.batch_shards)
        eos = _eos_array(eos_ids)
        # A warm-up run compiles (when needed) outside the timed run.
        before, t0 = self.compile_count, time.perf_counter()
        self._generate_batch(sp, prompts, b, max_new_tokens, eos)
        warmup_s = time.perf_counter() - t0
        stats: dict[str, float] = {}
        out = self._generate_batch(sp, prompts, b, max_new_tokens, eos, timings=stats)
        stats["warmup_s"] = warmup_s
        stats["compiles"] = self.compile_count - before
        return out, stats
