"""Every shipped training config loads, validates for its intended mesh, and names real presets."""

import importlib.util
import pathlib

import pytest

from globmed_jax.training.config import validate

CONFIGS = sorted(p for p in (pathlib.Path(__file__).resolve().parents[1] / "configs").glob("*.py")
                 if not p.name.startswith("bench_"))


def load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_validates_for_its_meshes(path):
    config = load(path)
    sizes = (config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
    # A fixed mesh runs on exactly that many devices; a -1 axis on one device and on an 8-chip host.
    device_counts = [1, 8] if -1 in sizes else [sizes[0] * sizes[1] * sizes[2]]
    for devices in device_counts:
        validate(config, num_devices=devices)
    if config.model.init == "pretrained":
        assert config.model.checkpoint and config.tokenizer.kind == "pretrained"


def test_recipes_cover_the_paper_models():
    names = {p.stem for p in CONFIGS}
    assert {"globmed_qwen3_1p7b", "globmed_qwen3_4b", "globmed_qwen3_8b", "globmed_llama3p1_8b",
            "smollm2_135m_sft", "demo", "globmed_medgemma_4b", "globmed_mistral_7b_v0p3"} <= names
    lora = load(next(p for p in CONFIGS if p.stem == "globmed_qwen3_8b_lora"))
    assert lora.lora.rank > 0 and (lora.mesh.data, lora.mesh.fsdp, lora.mesh.tensor) == (1, 1, 1)


BAD_VALUES = [
    ("train.peak_lr", float("nan")), ("train.peak_lr", -1e-4), ("train.peak_lr", 0.0), ("train.peak_lr", float("inf")),
    ("train.end_lr_ratio", -0.1), ("train.end_lr_ratio", 1.5), ("train.end_lr_ratio", float("nan")),
    ("train.warmup_steps", -1), ("train.warmup_steps", 1000),  # == train.steps
    ("train.weight_decay", -0.1), ("train.weight_decay", float("nan")),
    ("train.b1", 1.0), ("train.b1", -0.1), ("train.b2", float("nan")), ("train.eps", 0.0), ("train.eps", -1e-8),
    ("train.clip_norm", float("nan")), ("train.loss_chunk", 0), ("train.loss_remat", "yes"),
    ("train.global_batch_size", 0),
    ("checkpoint.every_steps", 0), ("checkpoint.keep", 0), ("log.every_steps", 0), ("eval.every_steps", -1),
    ("eval.batch_size", 0), ("model.dtype", "int8"), ("model.param_dtype", "float64"),
    ("data.temperature", 0.0), ("lora.alpha", float("nan")),
]


@pytest.mark.parametrize("key,value", BAD_VALUES, ids=[f"{k}={v}" for k, v in BAD_VALUES])
def test_bad_values_are_refused_naming_the_key(key, value):
    from globmed_jax.training.config import ConfigError, configured

    config = configured({"model.checkpoint": "/some/dir", key: value})
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(config, num_devices=1)


def test_documented_zero_values_are_accepted():
    """eval.every_steps=0: evaluate only at the end; train.clip_norm=0: no clipping;
    train.warmup_steps=0 and end_lr_ratio 0 or 1 are legitimate schedules."""
    from globmed_jax.training.config import configured

    for overrides in ({"eval.every_steps": 0}, {"train.clip_norm": 0.0}, {"train.warmup_steps": 0},
                      {"train.end_lr_ratio": 0.0}, {"train.end_lr_ratio": 1.0}, {"train.weight_decay": 0.0}):
        validate(configured({"model.checkpoint": "/some/dir", **overrides}), num_devices=1)


def test_data_objective_and_one_built_tree_are_checked_with_the_config():
    from globmed_jax.training.config import ConfigError, configured

    with pytest.raises(ConfigError, match=r"data\.objective"):
        validate(configured({"model.checkpoint": "/some/dir", "data.objective": "rlhf"}), num_devices=1)
    both = configured({"model.checkpoint": "/some/dir", "data.jsonl_dir": "a", "data.arrayrecord_dir": "b"})
    with pytest.raises(ConfigError, match="not both"):
        validate(both, num_devices=1)


def test_bench_globmed_lists_the_open_models_by_hub_id_and_the_endpoint_examples():
    from globmed_jax.evaluation.runner import chat_only, effective_mode, is_served
    from globmed_jax.models.hub import parse_hub_id

    path = pathlib.Path(__file__).resolve().parents[1] / "configs" / "bench_globmed.py"
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    plain = module.get_config()
    ids = {m.path for m in plain.models.values()}
    assert ids == {"Qwen/Qwen3-1.7B", "Qwen/Qwen3-4B", "Qwen/Qwen3-8B", "meta-llama/Llama-3.1-8B-Instruct",
                   "Qwen/Qwen2.5-7B-Instruct", "google/gemma-3-4b-it", "google/gemma-3-12b-it",
                   "google/medgemma-4b-it", "google/medgemma-27b-text-it", "mistralai/Mistral-7B-Instruct-v0.3"}
    assert all(parse_hub_id(i) is not None for i in ids)
    assert all(m.enable_thinking == ("false" if m.path.startswith("Qwen/Qwen3") else "") for m in plain.models.values())
    full = module.get_config("served,api")
    extra = {k: full.models[k] for k in set(full.models) - set(plain.models)}
    served = [m for m in extra.values() if is_served(m)]
    api = [m for m in extra.values() if m.path.startswith("api:")]
    assert len(served) == 1 and len(api) == 1 and len(extra) == 2
    assert served[0].tokenizer and served[0].base_url.endswith("/v1") and not chat_only(served[0])
    assert effective_mode(full, served[0]) == "loglik" and effective_mode(full, api[0]) == "generate"
    assert api[0].api_key_env == "OPENAI_API_KEY"  # a variable name, no key in the file
    with pytest.raises(ValueError, match="unknown extras"):
        module.get_config("servd")
