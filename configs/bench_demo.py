"""GlobMed-Bench demo: the demo-trained model and SmolLM2-135M-Instruct on GlobMed-mini (test).

Create the two checkpoints first:

    python -m globmed_jax.train --config configs/demo.py          # -> runs/demo/hf_export
    python -m globmed_jax.models.gguf_convert --out runs/smollm2_135m

then

    python -m globmed_jax.evaluate --config configs/bench_demo.py [--config.data.max_per_cell=0]

It scores the first 8 source items of every (dataset, language) cell, the same items in every
language (``data.max_per_cell=8``; 0 = every test item): SmolLM2-135M on 2 CPU cores is the slow
part, and every item is scored four ways (letter, cloze acc / acc_norm, open-QA generation).

GlobMed-mini is SYNTHETIC (globmed_jax/data/mini.py): the numbers show the pipeline works and
how low-resource training data shows up, not medical ability.
"""

from globmed_jax.evaluation.bench_config import default_config, model_spec


def get_config():
    c = default_config()
    c.out_dir = "runs/bench_demo"
    c.mode = "loglik"
    c.data.source = "mini"
    c.data.split = "test"
    c.data.max_per_cell = 8  # the first 8 source items per cell (see above)
    c.open_qa_max_new_tokens = 32  # GlobMed-mini's open answers are single terms
    # Every closed-form cell in both formulations (letter; cloze with acc and per-character
    # acc_norm); the leaderboard adds them and the OLMES best-of per model. k-shot prompts
    # (--config.num_shots=3) draw their shots from GlobMed-mini's validation (dev) split.
    c.formulations = ("letter", "cloze")
    c.models.demo = model_spec(
        "runs/demo/hf_export", setup="python -m globmed_jax.train --config configs/demo.py",
        dtype="float32", param_dtype="float32", mcqa_answer="option_text")  # as configs/demo.py trains it
    c.models.smollm2_135m = model_spec(
        "runs/smollm2_135m", setup="python -m globmed_jax.models.gguf_convert --out runs/smollm2_135m",
        dtype="float32", param_dtype="float32")
    return c
