"""scripts/tpu/launch.py: the gcloud commands it prints for v5p-8 / v6e-8, without running any."""

import importlib.util
import shlex
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "tpu" / "launch.py"


def load_launcher():
    spec = importlib.util.spec_from_file_location("tpu_launch", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["tpu_launch"] = module  # dataclasses resolve the module by name
    spec.loader.exec_module(module)
    return module


launch = load_launcher()


def dry_run(capsys, *args) -> list[str]:
    assert launch.main(["--dry-run", *args]) == 0
    return capsys.readouterr().out.strip().splitlines()


def by_step(lines):
    steps = {}
    for line in lines:
        if line.startswith("["):
            step, _, cmd = line.partition("] ")
            steps.setdefault(step[1:], []).append(cmd)
    return steps


def test_v5p_8_commands(capsys):
    lines = dry_run(capsys, "--name", "gm-v5p", "--accelerator", "v5p-8", "--zone", "us-east5-a",
                    "--project", "my-proj", "--config", "configs/demo.py", "--run-dir", "gs://bucket/run",
                    "--", "--config.train.steps=10")
    assert lines[0].startswith("# v5p-8: 4 chips on 1 host(s)")
    steps = by_step(lines)
    assert list(steps) == ["create", "copy", "install", "train", "logs", "delete"]
    assert steps["create"] == ["gcloud compute tpus tpu-vm create gm-v5p --zone=us-east5-a --project=my-proj "
                               "--accelerator-type=v5p-8 --version=v2-alpha-tpuv5"]
    assert steps["copy"][0] == "git archive --format=tar.gz --output=/tmp/globmed-jax-src.tar.gz HEAD"
    assert "tpu-vm scp /tmp/globmed-jax-src.tar.gz 'gm-v5p:~/globmed-jax-src.tar.gz'" in steps["copy"][1]
    ssh_lines = steps["copy"][2:] + steps["install"] + steps["train"]
    assert all("tpu-vm ssh gm-v5p --zone=us-east5-a --project=my-proj --worker=all --command" in c for c in ssh_lines)
    assert '.venv/bin/pip install -q -e . "jax[tpu]"' in steps["install"][0]
    train = shlex.split(steps["train"][0])
    remote = train[train.index("--command") + 1]
    assert ".venv/bin/python -m globmed_jax.train --config=configs/demo.py --config.train.steps=10 " \
           "--config.run_dir=gs://bucket/run" in remote
    assert "set -o pipefail" in remote and remote.endswith("| tee train.log")
    assert steps["logs"][1].endswith("tpu_logs/worker0.log --zone=us-east5-a --project=my-proj --worker=0")
    assert steps["delete"] == ["gcloud compute tpus tpu-vm delete gm-v5p --zone=us-east5-a --project=my-proj --quiet"]


def test_v6e_8_queued_spot_from_git(capsys):
    lines = dry_run(capsys, "--name", "gm6", "--accelerator", "v6e-8", "--zone", "us-east5-b", "--queued", "--spot",
                    "--config", "configs/demo.py", "--git-url", "https://example.com/globmed-jax.git",
                    "--git-ref", "v1", "--jax-version", "0.10.2", "--env", "LIBTPU_INIT_ARGS=--xla_tpu_x=true")
    assert lines[0].startswith("# v6e-8: 8 chips on 1 host(s), runtime v2-alpha-tpuv6e")
    steps = by_step(lines)
    assert list(steps) == ["create", "wait", "copy", "install", "train", "logs", "delete"]
    assert steps["create"] == ["gcloud compute tpus queued-resources create gm6 --node-id=gm6 --zone=us-east5-b "
                               "--accelerator-type=v6e-8 --runtime-version=v2-alpha-tpuv6e --spot"]
    assert "queued-resources describe gm6" in steps["wait"][0]
    assert all("--project" not in c for cmds in steps.values() for c in cmds)  # gcloud's default project
    assert "git clone --depth 1 --branch v1 https://example.com/globmed-jax.git ~/globmed-jax" in steps["copy"][0]
    assert '"jax[tpu]==0.10.2"' in steps["install"][0]
    assert len(steps["install"]) == 1  # no --setup
    assert "export LIBTPU_INIT_ARGS=--xla_tpu_x=true && " in steps["train"][0]
    assert steps["delete"] == ["gcloud compute tpus queued-resources delete gm6 --zone=us-east5-b --force --quiet"]


@pytest.mark.parametrize("name, chips, hosts", [("v5p-8", 4, 1), ("v5p-16", 8, 2), ("v6e-8", 8, 1),
                                                ("v6e-16", 16, 4), ("v4-8", 4, 1), ("v5litepod-8", 8, 1)])
def test_slice_sizes(name, chips, hosts):
    acc = launch.parse_accelerator(name)
    assert (acc.chips, acc.hosts) == (chips, hosts)


def test_setup_runs_on_every_worker_after_the_install(capsys):
    steps = by_step(dry_run(capsys, "--name", "s", "--accelerator", "v5p-8", "--zone", "z", "--config", "c.py",
                            "--setup", "hf download Qwen/Qwen3-8B --local-dir ckpt/qwen3_8b", "--steps", "install"))
    assert list(steps) == ["install"] and len(steps["install"]) == 2
    setup = shlex.split(steps["install"][1])
    assert setup[setup.index("--worker=all") + 1:] == [
        "--command", "cd ~/globmed-jax && hf download Qwen/Qwen3-8B --local-dir ckpt/qwen3_8b"]


def test_multi_host_fetches_every_workers_log(capsys):
    steps = by_step(dry_run(capsys, "--name", "big", "--accelerator", "v5p-16", "--zone", "z", "--config", "c.py",
                            "--run-dir", "gs://b/r", "--steps", "logs"))
    assert list(steps) == ["logs"]
    assert [c.split()[-1] for c in steps["logs"][1:]] == ["--worker=0", "--worker=1"]


def test_detach_runs_in_background_and_keeps_the_slice(capsys):
    steps = by_step(dry_run(capsys, "--name", "d", "--accelerator", "v5p-8", "--zone", "z", "--config", "c.py",
                            "--detach"))
    assert "delete" not in steps and "logs" not in steps
    assert "nohup .venv/bin/python -m globmed_jax.train --config=c.py > train.log 2>&1 < /dev/null &" in steps["train"][0]


def test_unknown_accelerator_and_step_are_usage_errors():
    base = [sys.executable, str(SCRIPT), "--dry-run", "--name", "x", "--zone", "z", "--config", "c.py"]
    bad = subprocess.run(base + ["--accelerator", "v9-8"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown TPU accelerator type 'v9-8'" in bad.stderr
    bad = subprocess.run(base + ["--accelerator", "v5p-8", "--steps", "create,launch"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown step(s) ['launch']" in bad.stderr


def test_no_secret_from_the_environment_is_printed(capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_123")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/home/me/key.json")
    out = "\n".join(dry_run(capsys, "--name", "s", "--accelerator", "v6e-8", "--zone", "z", "--config", "c.py"))
    assert "hf_secret_value_123" not in out and "key.json" not in out


def test_run_executes_commands_in_order_and_cleans_up_after_a_failure(monkeypatch):
    calls = []

    def fake_run(cmd, check=False, **kwargs):
        calls.append(cmd)
        if "globmed_jax.train" in " ".join(cmd):
            raise subprocess.CalledProcessError(3, cmd)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(launch.subprocess, "run", fake_run)
    plan, args = launch.parse_args(["--name", "f", "--accelerator", "v5p-8", "--zone", "z", "--config", "c.py"])
    assert launch.run(plan, args.steps) == 3
    kinds = [c[4] if c[0] == "gcloud" else c[0] for c in calls]
    assert kinds == ["create", "git", "scp", "ssh", "ssh", "ssh", "mkdir", "scp", "delete"]
