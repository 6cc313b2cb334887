"""Stage 2 of `make demo`: the GlobMed-LLM. The base model of configs/demo_base.py fine-tuned on
the GlobMed-mini training mixture with temperature weighting (T=3, as the GlobMed recipes), through
the normal training entry point, starting from the base model's HF export and its tokenizer.

    python -m globmed_jax.train --config configs/demo_base.py      # -> runs/demo/base/hf_export
    python -m globmed_jax.train --config configs/demo_globmed.py   # -> runs/demo/globmed/hf_export
    python -m globmed_jax.training.demo_report                     # -> runs/demo/report.md

The report evaluates base and fine-tuned model on the same held-out items, so the run itself
skips its own evaluation (eval.max_items_per_language=0).
"""

from globmed_jax.training.config import configured


def get_config():
    return configured({
        "run_dir": "runs/demo/globmed",
        "model.init": "pretrained", "model.checkpoint": "runs/demo/base/hf_export",
        "model.dtype": "float32",
        "tokenizer.kind": "pretrained",  # the base model's BPE (saved with its export)
        "data.mixture": "globmed_mini_t3",
        # Multiple choice in the cloze formulation, as configs/demo.py explains (a 1M-parameter
        # model does not learn to point back to option letters).
        "data.mcqa_answer": "option_text",
        "data.seq_len": 256,
        "train.steps": 160, "train.global_batch_size": 16, "train.peak_lr": 2e-3,
        "train.warmup_steps": 16, "train.weight_decay": 0.1,
        "train.prompt_loss_weight": 0.0,
        "checkpoint.every_steps": 80, "log.every_steps": 10,
        "eval.max_items_per_language": 0,
    })
