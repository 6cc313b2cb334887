"""Real weights: SmolLM2-135M-Instruct (Llama architecture) against transformers' own GGUF loader."""

import numpy as np
import pytest

import jax.numpy as jnp

from globmed_jax.models import from_pretrained, load_tokenizer
from globmed_jax.models.gguf_convert import smollm2_gguf_path
from hf_utils import relative_max_error

SENTENCES = [
    "Malaria is transmitted by the bite of an infected Anopheles mosquito.",
    "La insulina es el tratamiento de primera línea para la diabetes tipo 1.",
    "Le paludisme est causé par des parasites du genre Plasmodium.",
    "Kifua kikuu husababishwa na bakteria Mycobacterium tuberculosis.",
    "糖尿病患者需要定期检查血糖水平。",
]


@pytest.fixture(scope="module")
def torch_reference():
    import torch
    from transformers import AutoModelForCausalLM

    path = smollm2_gguf_path()
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    return model.eval()


def test_real_weights_match_pytorch_logits(smollm2_dir, torch_reference):
    import torch

    tokenizer = load_tokenizer(smollm2_dir)
    model, cfg = from_pretrained(smollm2_dir, dtype="float32")
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads) == (30, 576, 9, 3)
    for sentence in SENTENCES:
        ids = tokenizer(sentence)["input_ids"]
        assert len(ids) > 5
        with torch.no_grad():
            ref = torch_reference(torch.tensor([ids])).logits.float().numpy()
        ours = np.asarray(model(jnp.asarray([ids], jnp.int32)))
        err = relative_max_error(ours, ref)
        assert err < 1e-4, f"{sentence!r}: relative error {err:.2e}"
        # Real weights predict real text: the next-token argmax agrees on every position.
        assert (ours.argmax(-1) == ref.argmax(-1)).all()


def test_converted_tokenizer_matches_gguf_tokenizer_and_has_chat_template(smollm2_dir):
    from transformers import AutoTokenizer

    path = smollm2_gguf_path()
    reference = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    ours = load_tokenizer(smollm2_dir)
    for sentence in SENTENCES:
        assert ours(sentence)["input_ids"] == reference(sentence)["input_ids"]
    prompt = ours.apply_chat_template([{"role": "user", "content": "What causes malaria?"}],
                                      tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>assistant" in prompt and "What causes malaria?" in prompt
