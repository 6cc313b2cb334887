"""scripts/benchmark.py --smoke: the whole benchmark on CPU at a tiny shape. Checks that the ONE
table has every row with positive, finite numbers (speed itself is never asserted)."""

import importlib.util
import json
import math
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, one_device_env

SCRIPT = REPO_ROOT / "scripts" / "benchmark.py"
HF = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))


def load_benchmark():
    spec = importlib.util.spec_from_file_location("benchmark_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchmark_script"] = module
    spec.loader.exec_module(module)
    return module


bench = load_benchmark()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    env = one_device_env(JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--hf-parallel", "--repeats", "1",
                           "--json", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def expected_rows(shape) -> set[tuple[str, str]]:
    rows = {("device", "measured bf16 matmul TFLOP/s"), ("device", "datasheet bf16 TFLOP/s"),
            ("device", "measured copy GB/s (read+write)")}
    for remat in shape.remat:
        sec = f"train b{shape.train_batch}x{shape.train_seq} remat={remat}"
        rows |= {(sec, m) for m in ("tokens/s", "step time ms", "MFU % of measured matmul peak",
                                    "MFU % of datasheet peak", "peak device memory GiB",
                                    "XLA memory estimate GiB")}
    for b in shape.decode_batches:
        # One section per HF decoding variant the shape compares against (its first also gets the
        # weights-read floor); without HF, only the first section, with our numbers alone.
        variants = [v for v in ("static_compile", "default") if v in shape.hf_decode_variants]
        for variant in variants if HF else variants[:1]:
            sec = f"decode b{b} p{shape.prompt_len} x{shape.new_tokens}"
            sec += " vs HF default cache" if variant == "default" else ""
            rows |= {(sec, m) for m in ("prefill ms", "ms / new token", "new tokens/s")}
            if variant == variants[0]:
                rows.add((sec, "weights-read floor ms / token"))
    rows.add((f"score {shape.score_len}-token MCQA, batch {shape.score_batch}", "items/s"))
    return rows


# Metrics a CPU backend cannot report (no datasheet peak, no allocator statistics).
CPU_NA = ("datasheet", "peak device memory")


def test_table_has_every_row(smoke):
    stdout, result = smoke
    got = {(r["section"], r["metric"]) for r in result["rows"]}
    assert got == expected_rows(bench.SMOKE)
    table_lines = [line for line in stdout.splitlines() if line.startswith("| ")]
    assert table_lines[0] == "| section | metric | ours (JAX) | HF PyTorch | ours/HF |"
    assert len(table_lines) == len(result["rows"]) + 1  # one table: header + every row


def test_our_numbers_are_positive_and_finite(smoke):
    _, result = smoke
    for r in result["rows"]:
        if any(k in r["metric"] for k in CPU_NA):
            assert r["ours"] is None or isinstance(r["ours"], float)  # NaN ("n/a") on CPU
            continue
        assert isinstance(r["ours"], float) and math.isfinite(r["ours"]) and r["ours"] > 0, r
    assert math.isfinite(result["ours"]["train"]["full"]["loss"])


@pytest.mark.skipif(not HF, reason="torch/transformers not installed")
def test_hugging_face_columns_and_ratios(smoke):
    _, result = smoke
    assert result["hf"] and "error" not in result["hf"], result["hf"]
    compared = [r for r in result["rows"] if r["hf"] is not None]
    assert {r["section"].split(" ")[0] for r in compared} == {"train", "decode", "score"}
    for r in compared:
        if any(k in r["metric"] for k in CPU_NA):
            continue
        assert isinstance(r["hf"], float) and math.isfinite(r["hf"]) and r["hf"] > 0, r
        assert math.isclose(r["ratio"], r["ours"] / r["hf"], rel_tol=1e-9)


def test_mfu_follows_from_tokens_per_second(smoke):
    _, result = smoke
    rows = {(r["section"], r["metric"]): r["ours"] for r in result["rows"]}
    sec = f"train b{bench.SMOKE.train_batch}x{bench.SMOKE.train_seq} remat=full"
    peak = result["ours"]["device"]["matmul_flops"]
    expected = rows[(sec, "tokens/s")] * bench.train_flops_per_token(bench.SMOKE) / peak * 100
    assert math.isclose(rows[(sec, "MFU % of measured matmul peak")], expected, rel_tol=1e-9)


def test_shape_round_trips_through_the_child_arguments():
    args = bench.parse_args(["--shape-json", json.dumps(bench.dataclasses.asdict(bench.SMOKE))])
    assert bench.resolve_shape(args) == bench.SMOKE
