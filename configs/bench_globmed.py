"""GlobMed-Bench with the open 1.7B-8B models of the paper's range on the GlobMed JSONL data.

Paths are local Hugging Face checkpoint directories you download yourself (architectures we
support: qwen3, llama, qwen2); point them at your copies, e.g.

    python -m globmed_jax.evaluate --config configs/bench_globmed.py \
        --config.data.path=/data/globmed_jsonl --config.models.qwen3_8b.path=/ckpt/Qwen3-8B

To run a subset, copy this file and edit the model list. An API model can be added as
``model_spec("api:<model>", base_url="https://host/v1", api_key_env="MY_KEY_VAR")``.
"""

from globmed_jax.evaluation.bench_config import default_config, model_spec

_HINT = "download the Hugging Face checkpoint (safetensors + tokenizer) to this directory"


def get_config():
    c = default_config()
    c.out_dir = "runs/bench_globmed"
    c.mode = "loglik"
    c.batch_size = 16
    c.data.source = "jsonl"
    c.data.path = "data/globmed"  # <dataset>/<language>/<split>.jsonl from python -m data_pipelines.build
    c.data.split = "test"
    c.formulations = ("letter", "cloze")  # both formulations per closed cell (evaluation/formulations.py)
    # Qwen3 chat templates think by default; closed-form scoring wants the answer directly.
    qwen3 = dict(setup=_HINT, enable_thinking="false")
    c.models.qwen3_1_7b = model_spec("checkpoints/Qwen3-1.7B", **qwen3)
    c.models.qwen3_4b = model_spec("checkpoints/Qwen3-4B", **qwen3)
    c.models.qwen3_8b = model_spec("checkpoints/Qwen3-8B", **qwen3)
    c.models.llama31_8b = model_spec("checkpoints/Llama-3.1-8B-Instruct", setup=_HINT)
    c.models.qwen25_7b = model_spec("checkpoints/Qwen2.5-7B-Instruct", setup=_HINT)
    return c
