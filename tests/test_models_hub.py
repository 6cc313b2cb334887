"""Hub ids (``org/name[@revision]``) resolve through the local Hugging Face cache, offline.

The cache is one the test builds in the hub layout (``models--org--name/snapshots/<commit>/``
plus ``refs/<branch>``) under a temporary ``HF_HOME``; ``huggingface_hub`` reads its settings at
import, so each check runs in a fresh process with ``HF_HUB_OFFLINE=1``.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from globmed_jax.models.hub import parse_hub_id, resolve_checkpoint
from hf_utils import build_hf_model

torch = pytest.importorskip("torch")

REPO = pathlib.Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory):
    """HF_HOME with ``tiny-org/tiny-qwen3`` cached at ``main`` and tag ``v1`` (the same snapshot)."""
    home = tmp_path_factory.mktemp("hf_home")
    repo = home / "hub" / "models--tiny-org--tiny-qwen3"
    snapshot = repo / "snapshots" / COMMIT
    build_hf_model("qwen3_untied_gqa2").save_pretrained(snapshot)
    from globmed_jax.models.tokenizer import build_qwen3_tokenizer

    build_qwen3_tokenizer().save_pretrained(snapshot)
    (repo / "refs").mkdir()
    for ref in ("main", "v1"):
        (repo / "refs" / ref).write_text(COMMIT)
    return home


def _run(hf_home, code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", PYTHONPATH=f"{REPO}:{REPO / 'tests'}")
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_parse_hub_id():
    assert parse_hub_id("Qwen/Qwen3-1.7B") == ("Qwen/Qwen3-1.7B", None)
    assert parse_hub_id("google/medgemma-4b-it@main") == ("google/medgemma-4b-it", "main")
    for not_an_id in ("/abs/path", "a/b/c", "../x/y", "plain", "org/name@", "org/../x"):
        assert parse_hub_id(not_an_id) is None, not_an_id


def test_local_paths_win_over_hub_ids(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert resolve_checkpoint("org/name") == pathlib.Path("org/name")  # exists: never the Hub
    assert resolve_checkpoint(pathlib.Path("other/name")) == pathlib.Path("other/name")  # a Path is a path
    assert resolve_checkpoint("not/there/either") == pathlib.Path("not/there/either")


def test_from_pretrained_and_tokenizer_by_hub_id_offline(hf_home, tmp_path):
    code = f"""
import json, numpy as np
from globmed_jax.models import from_pretrained, load_tokenizer
from globmed_jax.models.hub import resolve_checkpoint
a, _ = from_pretrained("tiny-org/tiny-qwen3", dtype="float32")
b, _ = from_pretrained("tiny-org/tiny-qwen3@v1", dtype="float32")
tok = load_tokenizer("tiny-org/tiny-qwen3")
ids = np.array([tok.encode("Malaria is caused by")[:6]], np.int32) % 256
out = {{"path": str(resolve_checkpoint("tiny-org/tiny-qwen3")),
        "same": bool(np.array_equal(np.asarray(a(ids)), np.asarray(b(ids)))),
        "chat": bool(tok.chat_template), "ids": ids.tolist()}}
np.save({str(tmp_path / "logits.npy")!r}, np.asarray(a(ids)))
print(json.dumps(out))
"""
    proc = _run(hf_home, code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["path"].endswith(f"models--tiny-org--tiny-qwen3/snapshots/{COMMIT}")
    assert out["same"] and out["chat"]
    # The weights are the cached model's: logits equal the torch model's on the same tokens.
    ref = build_hf_model("qwen3_untied_gqa2")
    with torch.no_grad():
        want = ref(torch.tensor(out["ids"])).logits.numpy()
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), want, rtol=2e-4, atol=2e-4)


def test_missing_repo_offline_is_one_clear_error(hf_home):
    code = """
from globmed_jax.models import from_pretrained
from globmed_jax.models.hub import HubResolutionError
try:
    from_pretrained("tiny-org/not-cached")
except HubResolutionError as e:
    print("ERR", e)
"""
    proc = _run(hf_home, code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    message = proc.stdout
    assert message.startswith("ERR tiny-org/not-cached") and "HF_HUB_OFFLINE" in message
    assert "hf download tiny-org/not-cached" in message and "Traceback" not in proc.stderr
