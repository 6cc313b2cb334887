"""GlobMed-Bench with the open models of the paper's range and the medical ones on GlobMed JSONL.

Models are named by Hugging Face Hub id: each resolves through the local Hugging Face cache
(``HF_HOME``; ``HF_HUB_OFFLINE=1`` uses only what is there) or is downloaded on first use
(config, safetensors and tokenizer files only; gated repos such as Llama, Gemma and MedGemma need
their licence accepted on the Hub and ``HF_TOKEN`` set). A local directory works as well:

    python -m globmed_jax.evaluate --config configs/bench_globmed.py \
        --config.data.path=/data/globmed_jsonl --config.models.qwen3_8b.path=/ckpt/Qwen3-8B

Gemma 3 / MedGemma (``gemma3``) and Mistral (``mistral``) load once their model ports are in
``globmed_jax/models``; until then, run a copy of this file without them.

``--config configs/bench_globmed.py:served,api`` adds the two examples at the end:

* a SERVED model behind an OpenAI-compatible ``/v1/completions`` server (vLLM, SGLang, llama.cpp
  server, TGI), scored by log-likelihood from the server's prompt log-probabilities like the
  local rows; e.g. ``vllm serve Qwen/Qwen3-8B --port 8000`` (no key: ``api_key_env=""``);
  ``tokenizer`` is the served model's hub id or directory, whose chat template renders the prompts;
* an API model behind a chat endpoint (``api:<model>``): generated and parsed (a chat API
  returns no prompt log-probabilities); the leaderboard's Backends table says so.
"""

from globmed_jax.evaluation.bench_config import default_config, model_spec

# (config key, hub id, Qwen3-style thinking template)
OPEN_MODELS = (
    ("qwen3_1_7b", "Qwen/Qwen3-1.7B", True),
    ("qwen3_4b", "Qwen/Qwen3-4B", True),
    ("qwen3_8b", "Qwen/Qwen3-8B", True),
    ("llama31_8b", "meta-llama/Llama-3.1-8B-Instruct", False),
    ("qwen25_7b", "Qwen/Qwen2.5-7B-Instruct", False),
    ("gemma3_4b", "google/gemma-3-4b-it", False),
    ("gemma3_12b", "google/gemma-3-12b-it", False),
    ("medgemma_4b", "google/medgemma-4b-it", False),
    ("medgemma_27b_text", "google/medgemma-27b-text-it", False),
    ("mistral_7b_v03", "mistralai/Mistral-7B-Instruct-v0.3", False),
)
EXTRAS = ("served", "api")


def get_config(extras: str = ""):
    """``extras``: comma-separated names from ``EXTRAS`` (after ``:`` in ``--config``)."""
    wanted = {e for e in extras.split(",") if e}
    if wanted - set(EXTRAS):
        raise ValueError(f"configs/bench_globmed.py: unknown extras {sorted(wanted - set(EXTRAS))}; "
                         f"choose from {EXTRAS}")
    c = default_config()
    c.out_dir = "runs/bench_globmed"
    c.mode = "loglik"
    c.batch_size = 16
    c.data.source = "jsonl"
    c.data.path = "data/globmed"  # <dataset>/<language>/<split>.jsonl from python -m data_pipelines.build
    c.data.split = "test"
    c.formulations = ("letter", "cloze")  # both formulations per closed cell (evaluation/formulations.py)
    for key, hub_id, thinks in OPEN_MODELS:
        # Qwen3 chat templates think by default; closed-form scoring wants the answer directly.
        c.models[key] = model_spec(hub_id, enable_thinking="false" if thinks else "")
    if "served" in wanted:  # vllm serve Qwen/Qwen3-8B --port 8000
        c.models.qwen3_8b_vllm = model_spec("served:Qwen/Qwen3-8B", base_url="http://localhost:8000/v1",
                                            tokenizer="Qwen/Qwen3-8B", enable_thinking="false",
                                            max_concurrency=16)
    if "api" in wanted:  # a hosted chat model; the key is read from $OPENAI_API_KEY, never from the config
        c.models.gpt4o_mini = model_spec("api:gpt-4o-mini", base_url="https://api.openai.com/v1",
                                         api_key_env="OPENAI_API_KEY")
    return c
