"""Train on a Cloud TPU VM slice with ``gcloud``: create, copy + install, train, fetch logs, delete.

    python scripts/tpu/launch.py --name globmed-v5p --accelerator v5p-8 --zone us-east5-a \\
        --project my-project --config configs/demo.py --run-dir gs://my-bucket/runs/demo \\
        -- --config.train.steps=1000
    python scripts/tpu/launch.py ... --dry-run          # print the exact gcloud commands only
    python scripts/tpu/launch.py ... --steps train,logs # re-run some steps on an existing VM

Every worker of the slice gets the same code (a ``git archive`` of HEAD, or ``--git-url``) and
runs the same command (``--worker=all``); ``globmed_jax.distributed`` detects the TPU VM and
calls ``jax.distributed.initialize()``, so one command trains on every host. Multi-host runs
need a run directory every host can reach (``--run-dir gs://...``; orbax writes there).

Credentials are gcloud's own (``gcloud auth login`` / a service account); nothing secret is
passed or printed by this script. ``--env`` values are visible in the printed commands and in
process lists on the VM: use it for settings such as ``LIBTPU_INIT_ARGS``, never for tokens.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import subprocess
import sys
import time
from typing import Sequence

REMOTE_DIR = "globmed-jax"  # under the remote user's home
ARCHIVE = "/tmp/globmed-jax-src.tar.gz"
REMOTE_ARCHIVE = "globmed-jax-src.tar.gz"
LOG = "train.log"
STEPS = ("create", "copy", "install", "train", "logs", "delete")

# Accelerator family -> (TPU VM runtime version, chips per host of multi-host slices,
# largest single-host slice in chips, TensorCores per chip as counted in the slice name).
FAMILIES = {
    "v4": ("tpu-ubuntu2204-base", 4, 4, 2),
    "v5p": ("v2-alpha-tpuv5", 4, 4, 2),
    "v5litepod": ("v2-alpha-tpuv5-lite", 4, 8, 1),
    "v6e": ("v2-alpha-tpuv6e", 4, 8, 1),
}


@dataclasses.dataclass(frozen=True)
class Accelerator:
    name: str  # e.g. "v5p-8"
    family: str
    chips: int
    runtime_version: str
    hosts: int


def parse_accelerator(name: str, runtime_version: str | None = None) -> Accelerator:
    """``v5p-8`` -> 4 chips on 1 host, runtime ``v2-alpha-tpuv5``; unknown names raise ValueError."""
    family, _, size = name.partition("-")
    if family not in FAMILIES or not size.isdigit() or int(size) <= 0:
        raise ValueError(f"unknown TPU accelerator type {name!r}; expected <family>-<size> with family in "
                         f"{sorted(FAMILIES)} (e.g. v5p-8, v6e-8)")
    version, chips_per_host, single_host_chips, cores_per_chip = FAMILIES[family]
    chips = max(1, int(size) // cores_per_chip)
    hosts = 1 if chips <= single_host_chips else chips // chips_per_host
    return Accelerator(name, family, chips, runtime_version or version, hosts)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to run: the slice, where, and the training command."""

    name: str
    accelerator: Accelerator
    zone: str
    project: str | None
    config: str
    overrides: tuple[str, ...]
    run_dir: str | None = None
    spot: bool = False
    queued: bool = False
    git_url: str | None = None
    git_ref: str = "main"
    jax_version: str = ""
    env: tuple[str, ...] = ()
    logs_dir: str = "tpu_logs"
    detach: bool = False
    setup: str = ""


# ------------------------------------------------------------------------------ commands


def _where(plan: Plan) -> list[str]:
    out = [f"--zone={plan.zone}"]
    if plan.project:
        out.append(f"--project={plan.project}")
    return out


def _ssh(plan: Plan, command: str, worker: str = "all") -> list[str]:
    return ["gcloud", "compute", "tpus", "tpu-vm", "ssh", plan.name, *_where(plan), f"--worker={worker}",
            "--command", command]


def create_commands(plan: Plan) -> list[list[str]]:
    acc = plan.accelerator
    if plan.queued:  # v5p / v6e capacity usually comes through queued resources
        cmd = ["gcloud", "compute", "tpus", "queued-resources", "create", plan.name, f"--node-id={plan.name}",
               *_where(plan), f"--accelerator-type={acc.name}", f"--runtime-version={acc.runtime_version}"]
    else:
        cmd = ["gcloud", "compute", "tpus", "tpu-vm", "create", plan.name, *_where(plan),
               f"--accelerator-type={acc.name}", f"--version={acc.runtime_version}"]
    if plan.spot:
        cmd.append("--spot")
    return [cmd]


def wait_command(plan: Plan) -> list[str]:
    """Polled after a queued-resources create until it prints ACTIVE."""
    return ["gcloud", "compute", "tpus", "queued-resources", "describe", plan.name, *_where(plan),
            "--format=value(state.state)"]


def copy_commands(plan: Plan) -> list[list[str]]:
    if plan.git_url:  # each worker clones; nothing to upload
        clone = (f"rm -rf ~/{REMOTE_DIR} && git clone --depth 1 --branch {shlex.quote(plan.git_ref)} "
                 f"{shlex.quote(plan.git_url)} ~/{REMOTE_DIR}")
        return [_ssh(plan, clone)]
    return [
        ["git", "archive", "--format=tar.gz", f"--output={ARCHIVE}", "HEAD"],
        ["gcloud", "compute", "tpus", "tpu-vm", "scp", ARCHIVE, f"{plan.name}:~/{REMOTE_ARCHIVE}", *_where(plan),
         "--worker=all"],
        _ssh(plan, f"rm -rf ~/{REMOTE_DIR} && mkdir -p ~/{REMOTE_DIR} && "
                   f"tar xzf ~/{REMOTE_ARCHIVE} -C ~/{REMOTE_DIR}"),
    ]


def install_commands(plan: Plan) -> list[list[str]]:
    jax_pin = f"jax[tpu]=={plan.jax_version}" if plan.jax_version else "jax[tpu]"
    script = (f"cd ~/{REMOTE_DIR} && python3 -m venv .venv && .venv/bin/pip install -q -U pip && "
              f'.venv/bin/pip install -q -e . "{jax_pin}"')
    out = [_ssh(plan, script)]
    if plan.setup:  # e.g. download the base checkpoint on every worker
        out.append(_ssh(plan, f"cd ~/{REMOTE_DIR} && {plan.setup}"))
    return out


def train_command_line(plan: Plan) -> str:
    """The shell line every worker runs (output to ~/globmed-jax/train.log and the console)."""
    args = [f"--config={plan.config}", *plan.overrides]
    if plan.run_dir:
        args.append(f"--config.run_dir={plan.run_dir}")
    exports = "".join(f"export {shlex.quote(kv)} && " for kv in plan.env)
    train = shlex.join([".venv/bin/python", "-m", "globmed_jax.train", *args])
    if plan.detach:  # survives the ssh session; fetch the log later with --steps logs
        return f"cd ~/{REMOTE_DIR} && {exports}nohup {train} > {LOG} 2>&1 < /dev/null &"
    return f"cd ~/{REMOTE_DIR} && set -o pipefail && {exports}{train} 2>&1 | tee {LOG}"


def train_commands(plan: Plan) -> list[list[str]]:
    return [_ssh(plan, train_command_line(plan))]


def logs_commands(plan: Plan) -> list[list[str]]:
    out = [["mkdir", "-p", plan.logs_dir]]
    for w in range(plan.accelerator.hosts):
        out.append(["gcloud", "compute", "tpus", "tpu-vm", "scp", f"{plan.name}:~/{REMOTE_DIR}/{LOG}",
                    f"{plan.logs_dir}/worker{w}.log", *_where(plan), f"--worker={w}"])
    return out


def delete_commands(plan: Plan) -> list[list[str]]:
    if plan.queued:
        return [["gcloud", "compute", "tpus", "queued-resources", "delete", plan.name, *_where(plan),
                 "--force", "--quiet"]]
    return [["gcloud", "compute", "tpus", "tpu-vm", "delete", plan.name, *_where(plan), "--quiet"]]


BUILDERS = {"create": create_commands, "copy": copy_commands, "install": install_commands,
            "train": train_commands, "logs": logs_commands, "delete": delete_commands}


def commands(plan: Plan, steps: Sequence[str] = STEPS) -> list[tuple[str, list[str]]]:
    """(step, argv) in order; a queued create is followed by ("wait", describe-command), which
    ``run`` repeats until the slice is ACTIVE."""
    out = []
    for step in STEPS:
        if step in steps:
            out.extend((step, cmd) for cmd in BUILDERS[step](plan))
            if step == "create" and plan.queued:
                out.append(("wait", wait_command(plan)))
    return out


# ------------------------------------------------------------------------------- running


def wait_until_active(plan: Plan, poll_s: float = 30.0, timeout_s: float = 6 * 3600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = subprocess.run(wait_command(plan), check=True, capture_output=True, text=True).stdout.strip()
        print(f"queued resource {plan.name}: {state}", flush=True)
        if state == "ACTIVE":
            return
        if state in ("FAILED", "SUSPENDED"):
            raise RuntimeError(f"queued resource {plan.name} is {state}")
        time.sleep(poll_s)
    raise TimeoutError(f"queued resource {plan.name} not ACTIVE after {timeout_s:.0f}s")


def run(plan: Plan, steps: Sequence[str], *, keep_on_failure: bool = False) -> int:
    """Runs the steps; deletes the slice after a failed train step unless asked to keep it."""
    todo = commands(plan, steps)
    try:
        for step, cmd in todo:
            print(f"[{step}] {shlex.join(cmd)}", flush=True)
            if step == "wait":
                wait_until_active(plan)
            else:
                subprocess.run(cmd, check=True)
    except subprocess.CalledProcessError as err:
        print(f"error: command failed with exit code {err.returncode}", file=sys.stderr)
        if "delete" in steps and not keep_on_failure:
            for _, cmd in commands(plan, ("logs", "delete")):
                print(f"[cleanup] {shlex.join(cmd)}", flush=True)
                subprocess.run(cmd, check=False)
        return err.returncode or 1
    return 0


def parse_args(argv: Sequence[str]) -> tuple[Plan, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="TPU VM (and queued resource) name")
    parser.add_argument("--accelerator", required=True, help="e.g. v5p-8, v5p-16, v6e-8, v5litepod-8")
    parser.add_argument("--zone", required=True, help="e.g. us-east5-a (v5p), us-east5-b / europe-west4-a (v6e)")
    parser.add_argument("--project", default=None, help="GCP project (default: gcloud's configured project)")
    parser.add_argument("--runtime-version", default=None, help="TPU VM image (default per family)")
    parser.add_argument("--spot", action="store_true", help="spot capacity (preemptible; the run resumes)")
    parser.add_argument("--queued", action="store_true", help="create through queued resources and wait")
    parser.add_argument("--config", required=True, help="training config file, relative to the repo root")
    parser.add_argument("--run-dir", default=None, help="run directory; gs://... for multi-host slices")
    parser.add_argument("--git-url", default=None, help="clone this repository instead of copying HEAD")
    parser.add_argument("--git-ref", default="main")
    parser.add_argument("--jax-version", default="", help="pin jax[tpu] to this version")
    parser.add_argument("--setup", default="", help="shell command run on every worker after the install, in "
                        "the repo (e.g. .venv/bin/hf download Qwen/Qwen3-8B --local-dir ckpt/qwen3_8b)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="export on the workers (printed: not for secrets)")
    parser.add_argument("--logs-dir", default="tpu_logs")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    parser.add_argument("--detach", action="store_true",
                        help="start training in the background on the workers and return")
    parser.add_argument("--keep-on-failure", action="store_true", help="do not delete the slice after a failure")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("overrides", nargs="*", help="--config.a.b=value overrides (after --)")
    args = parser.parse_args(argv)
    steps = [s for s in args.steps.split(",") if s]
    if args.detach and "delete" in steps:
        steps = [s for s in steps if s not in ("logs", "delete")]  # the run is still going
        print("note: --detach skips logs/delete; run them later with --steps logs,delete", file=sys.stderr)
    unknown = set(steps) - set(STEPS)
    if unknown:
        parser.error(f"unknown step(s) {sorted(unknown)}; choose from {','.join(STEPS)}")
    for kv in args.env:
        if "=" not in kv:
            parser.error(f"--env expects KEY=VALUE, got {kv!r}")
    try:
        accelerator = parse_accelerator(args.accelerator, args.runtime_version)
    except ValueError as err:
        parser.error(str(err))
    plan = Plan(name=args.name, accelerator=accelerator, zone=args.zone, project=args.project,
                config=args.config, overrides=tuple(args.overrides), run_dir=args.run_dir, spot=args.spot,
                queued=args.queued, git_url=args.git_url, git_ref=args.git_ref, jax_version=args.jax_version,
                env=tuple(args.env), logs_dir=args.logs_dir, detach=args.detach,
                setup=args.setup)
    if accelerator.hosts > 1 and not (args.run_dir or "").startswith("gs://"):
        print(f"warning: {accelerator.name} has {accelerator.hosts} hosts; checkpoints need a shared "
              "--run-dir gs://...", file=sys.stderr)
    args.steps = steps
    return plan, args


def main(argv: Sequence[str] | None = None) -> int:
    plan, args = parse_args(sys.argv[1:] if argv is None else argv)
    acc = plan.accelerator
    if args.dry_run:
        print(f"# {acc.name}: {acc.chips} chips on {acc.hosts} host(s), runtime {acc.runtime_version}")
        for step, cmd in commands(plan, args.steps):
            print(f"[{step}] {shlex.join(cmd)}" + ("  # repeated until ACTIVE" if step == "wait" else ""))
        return 0
    return run(plan, args.steps, keep_on_failure=args.keep_on_failure)


if __name__ == "__main__":
    sys.exit(main())
