"""Clear errors for bad checkpoints; presets equal the public architectures."""

import json

import jax
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from globmed_jax.models import (
    PRESETS, CausalLM, CheckpointError, UnsupportedModelError, from_pretrained, get_preset, load_config, to_hf_config,
)
from hf_utils import build_hf_model


@pytest.fixture()
def checkpoint(tmp_path):
    build_hf_model("qwen3_untied_gqa2").save_pretrained(tmp_path)
    return tmp_path


def test_unsupported_model_type_names_the_file(checkpoint):
    config = json.loads((checkpoint / "config.json").read_text())
    config["model_type"] = "gpt2"
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match=r"config\.json.*'gpt2'"):
        from_pretrained(checkpoint)


def test_all_tensor_problems_are_reported_together(checkpoint):
    tensors = load_file(checkpoint / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    del tensors["model.norm.weight"]
    tensors["model.layers.0.self_attn.q_proj.weight"] = np.zeros((3, 3), np.float32)
    tensors["model.layers.0.mlp.extra.weight"] = np.zeros((2,), np.float32)
    save_file(tensors, checkpoint / "model.safetensors")
    with pytest.raises(CheckpointError) as info:
        from_pretrained(checkpoint)
    message = str(info.value)
    assert "2 missing" in message and "model.layers.1.mlp.up_proj.weight" in message and "model.norm.weight" in message
    assert "1 mis-shaped" in message and "q_proj.weight: expected (64, 64), found (3, 3)" in message
    assert "1 unexpected" in message and "model.layers.0.mlp.extra.weight" in message


def test_pickle_weights_are_refused(tmp_path, checkpoint):
    (tmp_path / "pt").mkdir()
    (tmp_path / "pt" / "config.json").write_text((checkpoint / "config.json").read_text())
    (tmp_path / "pt" / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(FileNotFoundError, match="pickle-based weights are not loaded"):
        from_pretrained(tmp_path / "pt")


def test_missing_config_and_bad_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json does not exist"):
        from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "qwen3",')
    with pytest.raises(ValueError, match=r"config\.json: invalid JSON at line 1"):
        from_pretrained(tmp_path)


def test_stop_tokens_come_from_generation_config(checkpoint):
    """transformers' generate stops on generation_config.json's eos ids; so does our decoding."""
    (checkpoint / "generation_config.json").unlink(missing_ok=True)
    config_eos = load_config(checkpoint).eos_token_ids
    (checkpoint / "generation_config.json").write_text(json.dumps({"eos_token_id": [7, 3]}))
    assert load_config(checkpoint).eos_token_ids == (7, 3) != config_eos
    assert load_config(checkpoint, eos_token_ids=(5,)).eos_token_ids == (5,)  # an explicit choice wins
    (checkpoint / "generation_config.json").write_text(json.dumps({"eos_token_id": "7"}))
    with pytest.raises(ValueError, match=r"generation_config\.json: field eos_token_id .*'7'"):
        load_config(checkpoint)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_have_the_public_parameter_counts(name):
    """Our presets, rendered as HF configs, build HF models with exactly our parameter count,
    and our abstract model has the same count (no memory is allocated: meta / eval_shape)."""
    import torch
    import transformers

    cfg = get_preset(name)
    hf_config = transformers.AutoConfig.for_model(**to_hf_config(cfg))
    with torch.device("meta"):
        hf_model = transformers.AutoModelForCausalLM.from_config(hf_config)
    hf_count = sum(p.numel() for p in hf_model.parameters())
    abstract = nnx.eval_shape(lambda: CausalLM(cfg, rngs=nnx.Rngs(0)))
    ours = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
    assert ours == hf_count == cfg.num_params()


def test_known_sizes():
    billions = {name: get_preset(name).num_params() / 1e9 for name in PRESETS}
    assert 1.7 < billions["qwen3_1p7b"] < 2.1 and 7.9 < billions["qwen3_8b"] < 8.3
    assert 7.9 < billions["llama3p1_8b"] < 8.1 and 0.13 < billions["smollm2_135m"] < 0.14


def test_config_validation():
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        get_preset("qwen3_0p6b", num_kv_heads=3)
    with pytest.raises(ValueError, match="remat_policy"):
        get_preset("qwen3_0p6b", remat_policy="sometimes")
    with pytest.raises(KeyError, match="unknown model preset"):
        get_preset("gpt5")
