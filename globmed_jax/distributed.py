"""Multi-process start-up: ``jax.distributed.initialize`` from config or environment.

``mode='auto'`` initialises when the environment says this is one of several processes:
Cloud TPU VMs (TPU_WORKER_HOSTNAMES / a TPU metadata server, detected by JAX itself), SLURM
(SLURM_NTASKS > 1), or the JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID
variables. ``mode='explicit'`` takes the coordinator address and process counts from config.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger(__name__)
_initialized = False


def _env_multi_process() -> bool:
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return True
    if os.environ.get("JAX_COORDINATOR_ADDRESS") and int(os.environ.get("JAX_NUM_PROCESSES", "1")) > 1:
        return True
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    return len([h for h in hosts.split(",") if h]) > 1


def maybe_initialize(settings: Any) -> bool:
    """Initialises ``jax.distributed`` per ``settings`` (the config's ``distributed`` block).

    Must run before any other JAX call. Returns True when it initialised.
    """
    global _initialized
    if _initialized:
        return True
    import jax

    mode = settings.mode
    if mode == "off":
        return False
    if mode == "explicit":
        if not settings.coordinator_address or settings.num_processes <= 0 or settings.process_id < 0:
            raise ValueError("distributed.mode='explicit' needs coordinator_address, num_processes and process_id")
        jax.distributed.initialize(coordinator_address=settings.coordinator_address,
                                   num_processes=settings.num_processes, process_id=settings.process_id)
    elif mode == "auto":
        if not _env_multi_process():
            return False
        if os.environ.get("JAX_COORDINATOR_ADDRESS"):
            jax.distributed.initialize(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
                                       num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
                                       process_id=int(os.environ["JAX_PROCESS_ID"]))
        else:
            jax.distributed.initialize()  # TPU VM / SLURM auto-detection
    else:
        raise ValueError(f"distributed.mode must be 'auto', 'off' or 'explicit', got {mode!r}")
    _initialized = True
    log.info("jax.distributed: process %d of %d, %d local / %d global devices", jax.process_index(),
             jax.process_count(), jax.local_device_count(), jax.device_count())
    return True
