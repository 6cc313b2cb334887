"""A vLLM-like ``/v1/completions`` server for tests: real HTTP (threading http.server on
127.0.0.1, a free port) and real log-probabilities from a tiny HF torch model.

Follows vLLM's documented completions format: the prompt is tokenised by the model's tokenizer;
``echo=true`` + ``logprobs=k`` returns ``choices[0].logprobs`` with ``tokens``,
``token_logprobs`` (null for the first token), ``top_logprobs`` and ``text_offset`` over the
prompt then the generated tokens, ``text`` = prompt + completion; ``prompt_logprobs=k`` returns
``choices[0].prompt_logprobs`` = [null, {"<id>": {"logprob", "rank", "decoded_token"}}, ...]
(k=0: the prompt token only). Token texts are detokenised incrementally (a token ending inside
a multi-byte character gets "" and the one completing it the character), so offsets count
characters of the prompt. Greedy generation (temperature 0) stops at the tokenizer's EOS.

``formats``: which log-probability formats it answers; a request for another one gets HTTP 400
(as llama.cpp server or TGI do for ``echo``). ``fail_next(n)`` answers the next n requests 503.
"""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any

from openai_stub import ThreadedServer, send_json

FORMATS = ("echo", "prompt_logprobs")


class CompletionsServer(ThreadedServer):
    def __init__(self, model_dir: str, *, formats: tuple[str, ...] = FORMATS, api_key: str | None = None,
                 model_name: str = "tiny"):
        import torch
        import transformers

        self.torch = torch
        self.model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.tok = transformers.AutoTokenizer.from_pretrained(model_dir)
        self.formats = formats
        self.api_key = api_key
        self.model_name = model_name
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str | None] = []
        self._failures = 0
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()  # torch on one model from many handler threads
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                send_json(self, status, payload)

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with server._lock:
                    server.requests.append(body)
                    server.auth_headers.append(self.headers.get("Authorization"))
                    fail = server._failures > 0
                    server._failures -= int(fail)
                if self.path.rstrip("/") != "/v1/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                if server.api_key is not None and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    return self._send(401, {"error": {"message": "invalid api key"}})
                if fail:
                    return self._send(503, {"error": {"message": "scripted 503"}})
                status, payload = server.complete(body)
                self._send(status, payload)

        self._serve(Handler)

    # ------------------------------------------------------------------------------ model

    def _token_texts(self, ids: list[int], skip: int = 0) -> list[str]:
        """Incremental detokenisation of ``ids[skip:]`` after ``ids[:skip]``."""
        texts, emitted = [], self.tok.decode(ids[:skip])
        for i in range(skip, len(ids)):
            full = self.tok.decode(ids[:i + 1])
            if full.endswith("\ufffd"):  # a character still incomplete
                texts.append("")
                continue
            texts.append(full[len(emitted):])
            emitted = full
        return texts

    def _forward_logprobs(self, ids: list[int]):
        torch = self.torch
        with self._model_lock, torch.no_grad():
            logits = self.model(torch.tensor([ids])).logits[0].float()
        return torch.log_softmax(logits, dim=-1)

    def complete(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            return 400, {"error": {"message": "prompt must be a string"}}
        echo = bool(body.get("echo"))
        want = "echo" if echo and body.get("logprobs") is not None else (
            "prompt_logprobs" if body.get("prompt_logprobs") is not None else None)
        if want is not None and want not in self.formats:
            return 400, {"error": {"message": f"{want} is not supported"}}
        ids = list(self.tok.encode(prompt))
        eos = {self.tok.eos_token_id} - {None}
        generated: list[int] = []
        for _ in range(int(body.get("max_tokens", 16))):
            nxt = int(self._forward_logprobs(ids + generated)[-1].argmax())
            if nxt in eos:
                break
            generated.append(nxt)
        all_ids = ids + generated
        lp = self._forward_logprobs(all_ids)
        texts = self._token_texts(all_ids)
        completion = self.tok.decode(generated, skip_special_tokens=True)
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "text": completion}
        token_lps = [None] + [float(lp[i - 1, all_ids[i]]) for i in range(1, len(all_ids))]
        if want == "echo":
            k = int(body["logprobs"])
            offsets, pos = [], 0
            for t in texts:
                offsets.append(pos)
                pos += len(t)
            top = [None] + [
                {texts[i] if j == all_ids[i] else self.tok.decode([j]): float(lp[i - 1, j])
                 for j in [all_ids[i], *lp[i - 1].topk(k).indices.tolist()]} for i in range(1, len(all_ids))]
            choice["text"] = prompt + completion
            choice["logprobs"] = {"tokens": texts, "token_logprobs": token_lps, "top_logprobs": top,
                                  "text_offset": offsets}
        elif want == "prompt_logprobs":
            if int(body["prompt_logprobs"]) != 0:
                return 400, {"error": {"message": "this stub serves prompt_logprobs=0 only"}}
            choice["prompt_logprobs"] = [None] + [
                {str(ids[i]): {"logprob": token_lps[i], "rank": int((lp[i - 1] > lp[i - 1, ids[i]]).sum()) + 1,
                               "decoded_token": texts[i]}} for i in range(1, len(ids))]
        return 200, {"id": "cmpl-stub", "object": "text_completion", "model": body.get("model"),
                     "choices": [choice],
                     "usage": {"prompt_tokens": len(ids), "completion_tokens": len(generated)}}

    # ----------------------------------------------------------------------------- server

    def fail_next(self, n: int) -> None:
        with self._lock:
            self._failures += n
