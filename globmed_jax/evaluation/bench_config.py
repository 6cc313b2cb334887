"""ml_collections building blocks for GlobMed-Bench configs (``configs/bench_*.py``).

Kept free of JAX imports so that parsing a config is instant. Every field has a concrete type
(empty string / 0 rather than None) so any of them can be overridden on the command line, e.g.
``--config.data.max_per_cell=20 --config.models.smollm2_135m.dtype=float32``.
"""

from __future__ import annotations

from ml_collections import ConfigDict

from globmed_jax.api_client import endpoint_defaults
from globmed_jax.data.languages import DEFAULT_LANGUAGES


def model_spec(path: str, *, setup: str = "", **overrides) -> ConfigDict:
    """One model. ``path``: a local HF checkpoint directory or hub id (``org/name[@revision]``),
    ``api:<model name>`` for an OpenAI-compatible chat endpoint (generation only), or
    ``served:<model name>`` for a model behind an OpenAI-compatible ``/v1/completions`` server
    (vLLM, SGLang, llama.cpp server, TGI), scored by log-likelihood from the server's prompt
    log-probabilities or generated. Endpoints need ``base_url`` (``http://host:8000/v1``) and,
    unless the server needs none, ``api_key_env`` = the NAME of the environment variable holding
    the key. ``tokenizer`` (served only): hub id or directory of the served model's tokenizer,
    whose chat template renders the prompts here, as for a local model; empty = ask
    ``/chat/completions`` (the server's template), generation only. ``logprobs_format`` (served):
    "auto" (detected per server), "echo" (OpenAI legacy echo + logprobs) or "prompt_logprobs"
    (vLLM). ``setup``: the command that creates a missing local ``path`` (shown in the error).

    ``mode``: "" uses the run's mode (API models generate, or reason in "reasoning" mode). ``enable_thinking``: "" leaves
    the chat template default, "true"/"false" pass it (Qwen3). ``mcqa_answer``: "" uses the run's
    multiple-choice answer format, "letter" or "option_text" sets it for this model (a model
    fine-tuned to reply with option texts, like the demo's, is scored that way). ``shard``:
    spread the weights over all local devices when there are several."""
    spec = ConfigDict(dict(
        path=path, setup=setup, dtype="bfloat16", param_dtype="bfloat16", shard=True, mode="",
        enable_thinking="", mcqa_answer="", batch_size=0, tokenizer="", logprobs_format="auto",
        **endpoint_defaults(),
    ))
    spec.update(overrides)
    return spec


def default_config() -> ConfigDict:
    """Run-level defaults; a config file sets ``models`` and ``data`` and tweaks the rest."""
    c = ConfigDict()
    c.out_dir = "runs/bench"
    c.mode = "loglik"  # "loglik" | "generate" | "reasoning" (API models generate unless "reasoning")
    # Reasoning mode: thinking on (Qwen3-style templates), this many tokens for the reasoning on
    # top of the answer allowance; the think block is stripped before parsing (evaluation.reasoning).
    c.reasoning_budget = 512
    # Position-bias pass: each mcqa item also scored with its options cyclically shifted by 1..k
    # (at most n-1 per item); 0 = off (evaluation.position_bias).
    c.permutations = 0
    c.num_shots = 0  # k-shot examples from data.shots_split (never test), as earlier chat turns
    c.instruction_language = "en"  # "en" | "native" (the item's language)
    c.system_prompt = ""
    c.mcqa_answer = "letter"  # "letter" (reply with the option letter) | "option_text" (its text)
    # Closed-form cells are also scored in these formulations (evaluation/formulations.py:
    # "letter", "cloze" = option text, with acc and per-character acc_norm); () = only the
    # model's mcqa_answer. The row's accuracy stays that of the model's mcqa_answer.
    c.formulations = ()
    c.batch_size = 32
    c.max_new_tokens = 16  # closed-form answers (generate mode, API models)
    c.open_qa_max_new_tokens = 128  # free-text answers
    c.seed = 0
    c.bootstrap_resamples = 1000
    c.progress = True
    c.report = True  # write leaderboard.md + PNGs after the sweep
    # A stored cell whose fingerprint (model files, prompt settings, seed, data, ...) differs from
    # this run's stops the run; True discards exactly those cells' rows and recomputes them.
    c.recompute = False
    c.data = ConfigDict(dict(
        source="mini",  # "mini" (GlobMed-mini, synthetic) | "jsonl" (normalized JSONL dir)
        path="",  # the JSONL directory (<dataset>/<language>/<split>.jsonl)
        split="test",
        shots_split="validation",  # the dev split (data build / GlobMed-mini); never the eval split
        shots_seed=0,  # seeds the shot choice (prompting.select_shots), the same for every model
        datasets=(),  # () = every dataset found
        languages=tuple(DEFAULT_LANGUAGES),
        max_per_cell=0,  # 0 = all items; N = the first N by source_id (aligned across languages)
    ))
    c.judge = ConfigDict(dict(
        enabled=False,  # LLM-as-judge 1-5 scores for open_qa cells
        model="", **endpoint_defaults(max_concurrency=4),
    ))
    c.models = ConfigDict()
    return c
