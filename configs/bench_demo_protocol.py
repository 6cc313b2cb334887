"""GlobMed-Bench protocol checks on GlobMed-mini for the demo model and SmolLM2-135M-Instruct.

The leaderboard of ``configs/bench_demo.py`` extended with what reviewers ask of a protocol
(``evaluation.protocol_report``): each model scored by option log-likelihood AND by generation
(the agreement table pairs the two entries of the same checkpoint), SmolLM2 also in reasoning
mode (thinking on where the template has it, a reasoning budget, the think block stripped before
parsing; SmolLM2's template does not think, so this measures a longer generation budget), and the
option-permutation pass (every mcqa item also scored with its options shifted by 1, 2, 3).
Paired intervals, position bias, parse failures and language fidelity all come out of one run.

Generation is the slow part on CPU, so the run takes the first ``max_per_cell`` source items of
every (dataset, language) cell (the same items in every language)::

    python -m globmed_jax.evaluate --config configs/bench_demo_protocol.py \
        --config.models.demo.path=runs/demo/globmed/hf_export --config.models.demo_generate.path=runs/demo/globmed/hf_export

GlobMed-mini is SYNTHETIC: the numbers show what each statistic says, not medical ability.
"""

from globmed_jax.evaluation.bench_config import default_config, model_spec

_DEMO = dict(path="runs/demo/hf_export", setup="python -m globmed_jax.train --config configs/demo.py",
             dtype="float32", param_dtype="float32", mcqa_answer="option_text")  # as configs/demo.py trains it
_SMOL = dict(path="runs/smollm2_135m", setup="python -m globmed_jax.models.gguf_convert --out runs/smollm2_135m",
             dtype="float32", param_dtype="float32")


def get_config():
    c = default_config()
    c.out_dir = "runs/bench_demo_protocol"
    c.mode = "loglik"
    c.data.source = "mini"
    c.data.split = "test"
    c.data.max_per_cell = 4  # the first 4 source items: generation dominates the run time on CPU
    c.open_qa_max_new_tokens = 32  # GlobMed-mini's open answers are single terms
    c.permutations = 3  # every cyclic shift of the 4 options
    c.reasoning_budget = 96
    for name, spec in (("demo", _DEMO), ("smollm2_135m", _SMOL)):
        path = spec["path"]
        rest = {k: v for k, v in spec.items() if k != "path"}
        c.models[name] = model_spec(path, **rest)
        c.models[f"{name}_generate"] = model_spec(path, mode="generate", **rest)
    c.models.smollm2_135m_reasoning = model_spec(_SMOL["path"], mode="reasoning",
                                                 **{k: v for k, v in _SMOL.items() if k != "path"})
    return c
