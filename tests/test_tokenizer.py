"""The real Qwen3 tokenizer built offline, and loading a saved tokenizer with its template."""

import pytest

from globmed_jax.models import load_tokenizer
from globmed_jax.models.tokenizer import build_qwen3_tokenizer


@pytest.fixture(scope="module")
def qwen3():
    return build_qwen3_tokenizer()


def test_qwen3_ids_match_the_public_vocabulary(qwen3):
    assert qwen3("Hello, world!")["input_ids"] == [9707, 11, 1879, 0]
    assert qwen3.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]) == [
        151643, 151644, 151645, 151667, 151668]
    text = "Ugonjwa wa malaria husababishwa na vimelea. 疟疾由寄生虫引起。"
    assert qwen3.decode(qwen3(text)["input_ids"]) == text


def test_chat_template_and_thinking_switch(qwen3):
    messages = [{"role": "user", "content": "Is aspirin an NSAID?"}]
    prompt = qwen3.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nIs aspirin an NSAID?<|im_end|>\n<|im_start|>assistant\n"
    no_think = qwen3.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert no_think.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_load_tokenizer_round_trip_and_missing_template(qwen3, tmp_path):
    qwen3.save_pretrained(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded("Hello, world!")["input_ids"] == [9707, 11, 1879, 0]
    assert loaded.chat_template == qwen3.chat_template
    qwen3.chat_template = None
    qwen3.save_pretrained(tmp_path / "bare")
    for leftover in (tmp_path / "bare").glob("chat_template*"):
        leftover.unlink()
    with pytest.raises(ValueError, match="has no chat template"):
        load_tokenizer(tmp_path / "bare")
    with pytest.raises(FileNotFoundError):
        load_tokenizer(tmp_path / "nowhere")
