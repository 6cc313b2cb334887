"""Print logit / hidden-state parity against transformers PyTorch at fp32 for every tiny test
config and for the real SmolLM2-135M weights (the figures quoted in the issue notes).

    python scripts/parity_report.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hf_utils import TINY_CONFIGS, build_hf_model, hf_logits_and_hidden, relative_max_error  # noqa: E402


def main() -> None:
    import jax.numpy as jnp

    from globmed_jax.models import from_pretrained

    tokens = np.random.default_rng(0).integers(0, 256, size=(2, 24)).astype(np.int32)
    print(f"{'config':24s} {'logits rel. max err':>20s} {'worst hidden-state rel. err':>28s}")
    for kind in sorted(TINY_CONFIGS):
        hf_model = build_hf_model(kind)
        with tempfile.TemporaryDirectory() as tmp:
            hf_model.save_pretrained(tmp)
            ref_logits, ref_hidden = hf_logits_and_hidden(hf_model, tokens)
            model, cfg = from_pretrained(tmp, dtype="float32")
            out = model.forward(jnp.asarray(tokens), return_hidden_states=True)
            hidden = [relative_max_error(out.hidden_states[i], ref_hidden[i]) for i in range(cfg.num_layers)]
            hidden.append(relative_max_error(out.hidden, ref_hidden[cfg.num_layers]))
            print(f"{kind:24s} {relative_max_error(out.logits, ref_logits):20.2e} {max(hidden):28.2e}")

    import torch
    from transformers import AutoModelForCausalLM

    from globmed_jax.models import load_tokenizer
    from globmed_jax.models.gguf_convert import convert_gguf, smollm2_gguf_path

    gguf = smollm2_gguf_path()
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    with tempfile.TemporaryDirectory() as tmp:
        convert_gguf(gguf, tmp)
        model, _ = from_pretrained(tmp, dtype="float32")
        tokenizer = load_tokenizer(tmp)
        sentences = ["Malaria is transmitted by the bite of an infected Anopheles mosquito.",
                     "Kifua kikuu husababishwa na bakteria Mycobacterium tuberculosis.",
                     "糖尿病患者需要定期检查血糖水平。"]
        worst = 0.0
        for sentence in sentences:
            ids = tokenizer(sentence)["input_ids"]
            with torch.no_grad():
                ref = reference(torch.tensor([ids])).logits.numpy()
            worst = max(worst, relative_max_error(model(jnp.asarray([ids], jnp.int32)), ref))
        print(f"{'smollm2_135m (real)':24s} {worst:20.2e} {'-':>28s}")


if __name__ == "__main__":
    main()
