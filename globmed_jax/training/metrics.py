"""Training metrics: model FLOPs / MFU, JSON lines, TensorBoard, and a progress bar."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax

from globmed_jax.models.config import ModelConfig

# Dense bf16 peak FLOP/s per device from the vendors' datasheets (device_kind substring -> peak).
DATASHEET_PEAK_FLOPS = {
    "H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "A10G": 125e12,
    "TPU v6": 918e12, "TPU v5p": 459e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v4": 275e12,
}


def flops_per_token(cfg: ModelConfig, seq_len: int, trainable_fraction: float = 1.0) -> float:
    """Training FLOPs per token: 6 x matmul params (2 forward, 4 backward) plus causal attention
    (QK^T and AV over on average half the sequence). ``trainable_fraction`` < 1 (LoRA) drops
    the weight-gradient matmuls of frozen weights: 4N for trained, 2N for frozen weights."""
    # The embedding lookup costs no matmul; a tied embedding is still the output projection.
    embed_lookup = 0 if cfg.tie_word_embeddings else cfg.vocab_size * cfg.hidden_size
    matmul_params = cfg.num_params() - embed_lookup
    dense = (2 + 2 + 2 * trainable_fraction) * matmul_params
    attention = 6 * cfg.num_layers * cfg.num_heads * cfg.head_dim * seq_len  # 12*L*N*H*T / 2 (causal)
    return dense + attention


def datasheet_peak_flops(device: jax.Device | None = None) -> float | None:
    device = device or jax.devices()[0]
    kind = getattr(device, "device_kind", "")
    for key, peak in DATASHEET_PEAK_FLOPS.items():
        if key.lower() in kind.lower():
            return peak
    return None


class MetricsWriter:
    """Appends one JSON object per logged step to ``metrics.jsonl`` and mirrors scalars to
    TensorBoard (tensorboardX). Only process 0 writes."""

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True):
        self.enabled = jax.process_index() == 0
        self.path = Path(run_dir) / "metrics.jsonl"
        self._tb = None
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def write(self, step: int, scalars: Mapping[str, Any], kind: str = "train") -> None:
        if not self.enabled:
            return
        row = {"step": int(step), "kind": kind, "time": time.time(), **{k: _plain(v) for k, v in scalars.items()}}
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for key, value in row.items():
                if key not in ("step", "time", "kind") and isinstance(value, (int, float)):
                    self._tb.add_scalar(f"{kind}/{key}", value, int(step))
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "size", 2) == 1:
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def per_language_losses(lang_loss_sum: Sequence[float], lang_tokens: Sequence[float],
                        languages: Sequence[str]) -> dict[str, float]:
    return {f"loss_{lang}": float(s / n) for lang, s, n in zip(languages, lang_loss_sum, lang_tokens) if n > 0}


class Throughput:
    """Tokens/s and MFU over the steps since the last report."""

    def __init__(self, tokens_per_step: int, flops_per_token: float, num_devices: int, peak_flops: float | None):
        self.tokens_per_step = tokens_per_step
        self.flops_per_token = flops_per_token
        self.num_devices = num_devices
        self.peak_flops = peak_flops
        self._last = time.perf_counter()
        self._steps = 0

    def tick(self) -> None:
        self._steps += 1

    def report(self) -> dict[str, float]:
        now = time.perf_counter()
        elapsed, steps = now - self._last, self._steps
        self._last, self._steps = now, 0
        if steps == 0 or elapsed <= 0:
            return {}
        tokens_per_s = steps * self.tokens_per_step / elapsed
        out = {"tokens_per_s": tokens_per_s, "step_time_s": elapsed / steps}
        if self.peak_flops:
            out["mfu"] = tokens_per_s * self.flops_per_token / (self.num_devices * self.peak_flops)
        return out
