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
            "smollm2_135m_sft", "demo"} <= names
    lora = load(next(p for p in CONFIGS if p.stem == "globmed_qwen3_8b_lora"))
    assert lora.lora.rank > 0 and (lora.mesh.data, lora.mesh.fsdp, lora.mesh.tensor) == (1, 1, 1)
