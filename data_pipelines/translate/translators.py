"""Translators: a small protocol, a local model (jitted batched greedy decoding) and an API.

A translator turns a batch of texts from one language into another::

    class Translator(Protocol):
        name: str            # stable id: part of the cache key and of every record's meta
        def translate(self, texts, source, target) -> list[str]: ...

``LocalTranslator`` (``local:<hf dir>``) prompts a local checkpoint through its chat template
and decodes with :meth:`globmed_jax.decode.Decoder.generate` (length-sorted batches, bucketed
shapes). ``APITranslator`` (``api:<model>``) sends the same chat messages to an
OpenAI-compatible endpoint through the bench's :class:`~globmed_jax.api_client.ChatClient`
(bounded concurrency, retries with backoff, timeouts, on-disk cache). Tests plug in any object
with ``name`` and ``translate``.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import re
from typing import Any, Protocol, Sequence, runtime_checkable

from data_pipelines.translate.placeholders import PLACEHOLDER_RE
from globmed_jax.data.languages import get_language
from globmed_jax.api_client import APIConfig

log = logging.getLogger(__name__)

LOCAL_PREFIX, API_PREFIX = "local:", "api:"


@runtime_checkable
class Translator(Protocol):
    name: str

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        """One translation per text, in order (``source``/``target``: ISO codes)."""
        ...


# A translator may also define ``translate_mixed(items) -> list[str]`` for items
# ``(text, source, target)`` of different language pairs; the pipeline then fills each batch
# across pairs (fewer, fuller device batches for a local model).


# --------------------------------------------------------------------------------- prompts

SYSTEM_PROMPT = "You are a professional medical translator."


def translation_messages(text: str, source: str, target: str) -> list[dict[str, str]]:
    """The chat messages that ask for one translation (same for local models and APIs; kept
    short: with a local model the prompt is part of every prefill)."""
    src, tgt = get_language(source).name, get_language(target).name
    lines = [f"Translate this medical text from {src} to {tgt}. Reply with the translation only."]
    if PLACEHOLDER_RE.search(text):
        lines.append("Copy every marker like \u27e60\u27e7 unchanged.")
    lines += ["", text]
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n".join(lines)}]


_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL)
_LEAD_RE = re.compile(
    r"^\s*(?:sure[,!.]?\s*)?(?:here(?:'s| is)\s+(?:the\s+)?(?:\w+\s+)?translation[^:\n]*:|"
    r"(?:\w+\s+)?translation\s*(?:\([^)]*\))?\s*:)\s*", re.IGNORECASE)
_QUOTES = ('"', "'", "\u201c\u201d", "\u00ab\u00bb", "\u201e\u201c", "`")


def clean_reply(reply: str, target: str | None = None) -> str:
    """The translation out of a chat reply: drops think blocks, code fences, a leading
    "Here is the translation:" / "Swahili translation:" / "Swahili:" label (``target``: the
    target language code) and wrapping quotes."""
    text = _THINK_RE.sub("", reply)
    if "</think>" in text:  # an unclosed think block: keep what follows its end
        text = text.split("</think>", 1)[1]
    text = text.strip()
    fence = re.fullmatch(r"```[\w-]*\n?(.*?)\n?```", text, re.DOTALL)
    if fence:
        text = fence.group(1).strip()
    text = _LEAD_RE.sub("", text, count=1).strip()
    if target is not None:
        name = re.escape(get_language(target).name)
        text = re.sub(rf"^(?:in\s+)?{name}\s*(?:translation)?\s*:\s*", "", text, count=1, flags=re.IGNORECASE).strip()
    for q in _QUOTES:
        o, c = (q[0], q[-1])
        if len(text) >= 2 and text[0] == o and text[-1] == c and text.count(o) + (text.count(c) if c != o else 0) == 2:
            text = text[1:-1].strip()
            break
    return text


# ---------------------------------------------------------------------------------- local


class LocalTranslator:
    """A local HF checkpoint directory, loaded on first use (a fully cached run never loads it).

    ``max_new_tokens``: the generation cap; each batch gets ``min(cap, ratio * longest source
    tokens + 16)`` (``length_ratio``), so short texts do not pay for the cap.
    """

    def __init__(self, path: str | pathlib.Path, *, max_new_tokens: int = 256, length_ratio: float = 3.0,
                 batch_size: int = 16, dtype: str = "float32", shard: bool | None = None,
                 enable_thinking: bool | None = False, progress: bool | None = False):
        self.path = pathlib.Path(path)
        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(f"local translator: {self.path} is not a checkpoint directory (no config.json)")
        self.name = f"{LOCAL_PREFIX}{self.path.resolve().name}"
        self.max_new_tokens, self.length_ratio, self.batch_size = max_new_tokens, length_ratio, batch_size
        self.dtype, self.shard, self.enable_thinking, self.progress = dtype, shard, enable_thinking, progress
        self._decoder = self._tokenizer = None
        self.calls = 0  # texts translated (not cached), for logs and tests

    def load(self) -> None:
        import jax

        from globmed_jax.models import from_pretrained, load_tokenizer

        mesh = None
        if self.shard or (self.shard is None and jax.device_count() > 1):
            from globmed_jax.sharding import make_mesh

            mesh = make_mesh()
        log.info("loading translator %s (%s, mesh=%s)", self.path, self.dtype, None if mesh is None else dict(mesh.shape))
        from globmed_jax.decode import Decoder
        from globmed_jax.models.tokenizer import pad_id

        model, _ = from_pretrained(self.path, dtype=self.dtype, param_dtype=self.dtype, mesh=mesh)
        self._tokenizer = load_tokenizer(self.path)
        self._decoder = Decoder(model, pad_id=pad_id(self._tokenizer))

    def _prompt_ids(self, text: str, source: str, target: str) -> list[int]:
        kwargs = {} if self.enable_thinking is None else {"enable_thinking": self.enable_thinking}
        prompt = self._tokenizer.apply_chat_template(translation_messages(text, source, target), tokenize=False,
                                                     add_generation_prompt=True, **kwargs)
        return list(self._tokenizer.encode(prompt, add_special_tokens=False))

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        return self.translate_mixed([(t, source, target) for t in texts])

    def translate_mixed(self, items: Sequence[tuple[str, str, str]]) -> list[str]:
        """Translations of ``(text, source, target)`` items, any language pairs mixed."""
        from globmed_jax.models.tokenizer import eos_ids

        if not items:
            return []
        if self._decoder is None:
            self.load()
        tok = self._tokenizer
        prompts = [self._prompt_ids(*item) for item in items]
        longest = max(len(tok.encode(t, add_special_tokens=False)) for t, _, _ in items)
        max_new = max(1, min(self.max_new_tokens, int(self.length_ratio * longest) + 16))
        outs = self._decoder.generate(prompts, max_new_tokens=max_new, eos_ids=eos_ids(tok),
                                      batch_size=self.batch_size, progress=self.progress)
        self.calls += len(items)
        texts = tok.batch_decode(outs, skip_special_tokens=True)
        return [clean_reply(t, target) for t, (_, _, target) in zip(texts, items)]


# ------------------------------------------------------------------------------------ API


def api_settings(**fields: Any) -> APIConfig:
    """Endpoint settings for ``api:<model>`` translators: the bench client's ``APIConfig`` with
    room for long translations (``max_tokens`` 1024); the translator fills in ``model`` and
    ``cache_path``. ``api_key_env`` is the NAME of the key's variable."""
    return APIConfig(**{"base_url": "", "model": "", "max_tokens": 1024, **fields})


class APITranslator:
    """An OpenAI-compatible chat endpoint through the bench's ``ChatClient``."""

    def __init__(self, model: str, settings: APIConfig, *, cache_path: str | pathlib.Path | None = None,
                 progress: bool = False, client: Any = None):
        from globmed_jax.api_client import ChatClient

        if client is None:
            if not settings.base_url:
                raise ValueError(f"api translator {model!r} needs a base URL (--api-base-url)")
            client = ChatClient(dataclasses.replace(settings, model=model,
                                                    cache_path=str(cache_path) if cache_path else ""))
        self.client = client
        self.name = f"{API_PREFIX}{model}"
        self.progress = progress
        self.calls = 0

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        if not texts:
            return []
        convs = [translation_messages(t, source, target) for t in texts]
        replies = self.client.complete_many(convs, progress=self.progress)
        self.calls += len(texts)
        return [clean_reply(r, target) for r in replies]


def make_translator(spec: str, *, api: APIConfig | None = None, cache_dir: str | pathlib.Path | None = None,
                    progress: bool | None = False, **local_kwargs: Any) -> Translator:
    """``local:<hf dir>`` or ``api:<model name>`` (``api`` settings; the API's response cache
    goes to ``cache_dir/api_cache.ndjson``)."""
    if spec.startswith(LOCAL_PREFIX):
        return LocalTranslator(spec[len(LOCAL_PREFIX):], progress=progress, **local_kwargs)
    if spec.startswith(API_PREFIX):
        model = spec[len(API_PREFIX):]
        if not model:
            raise ValueError("api translator needs a model name: api:<name>")
        cache = pathlib.Path(cache_dir) / "api_cache.ndjson" if cache_dir else None
        return APITranslator(model, api or api_settings(), cache_path=cache, progress=bool(progress))
    raise ValueError(f"translator must be 'local:<hf dir>' or 'api:<name>', got {spec!r}")
