"""Shared settings of the GlobMed-LLM recipes (imported by the per-model configs).

The paper's hyper-parameters are not public; these are reasonable SFT defaults, all overridable:
    python -m globmed_jax.train --config configs/globmed_qwen3_8b.py --config.train.peak_lr=5e-6
"""

from globmed_jax.training.config import default_config


def globmed_recipe(*, checkpoint: str, run_dir: str, seq_len: int = 2048, global_batch: int = 128,
                   mesh=(1, -1, 1), remat: str = "full"):
    c = default_config()
    c.run_dir = run_dir
    c.model.init = "pretrained"
    c.model.checkpoint = checkpoint  # a local HF directory (download it first; no hub access at run time)
    c.model.dtype = "bfloat16"
    c.model.param_dtype = "float32"
    c.model.remat_policy = remat
    c.tokenizer.kind = "pretrained"
    # GlobMed JSONL built by `python -m data_pipelines.build --format globmed ...`; one task per
    # (dataset, language) and an mT5-style temperature mixture that up-weights scarce languages.
    c.data.jsonl_dir = "data/globmed_jsonl"
    c.data.mixture = "globmed_t3"
    c.data.temperature = 3.0
    c.data.seq_len = seq_len
    c.data.packing = True
    c.train.global_batch_size = global_batch
    c.train.steps = 4000
    c.train.peak_lr = 1e-5
    c.train.warmup_steps = 100
    c.train.end_lr_ratio = 0.1
    c.train.weight_decay = 0.1
    c.train.loss_chunk = 512  # never materialise [B, T, 152k] fp32 logits
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = mesh
    c.checkpoint.every_steps = 250
    c.checkpoint.keep = 3
    c.eval.every_steps = 500
    c.eval.max_items_per_language = 300
    c.log.every_steps = 10
    return c
