"""A small byte-level BPE tokenizer trained on a corpus (the demo trains its model from scratch,
so it has no pretrained vocabulary). ChatML special tokens and chat template as Qwen3 uses."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from globmed_jax.models.tokenizer import QWEN3_CHAT_TEMPLATE

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Trains a byte-level BPE on ``texts`` (deterministic for the same input order)."""
    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>")
    tokenizer.chat_template = QWEN3_CHAT_TEMPLATE
    return tokenizer


def load_or_train_bpe(directory: str | Path, texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Loads the tokenizer saved in ``directory`` (a resumed run) or trains and saves one."""
    from globmed_jax.models.tokenizer import load_tokenizer

    directory = Path(directory)
    if (directory / "tokenizer.json").exists():
        return load_tokenizer(directory)
    tokenizer = train_bpe_tokenizer(texts, vocab_size)
    tokenizer.save_pretrained(directory)
    return tokenizer
