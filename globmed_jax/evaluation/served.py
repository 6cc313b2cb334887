"""A model behind an OpenAI-compatible ``/v1/completions`` server, as a scoring ``Backend``.

Prompts are rendered HERE with the served model's own tokenizer and chat template (exactly the
text a local model gets, ``scoring.prompt_texts``) and sent as text, so local and served rows
of the leaderboard score the same prompts.

Log-likelihood of a choice: the server is sent ``prompt + choice`` and returns its tokens'
log-probabilities (``api_client.CompletionsClient.prompt_logprobs``: OpenAI legacy ``echo`` +
``logprobs``, or vLLM's ``prompt_logprobs``, detected on the first request). The choice's tokens
are located by character offset: those from the token that starts at ``len(prompt)`` to the end
(``api_client.continuation_logprob``). A server token spanning the boundary (the context's last
characters and the choice's first merged into one token) is an explicit
``ContinuationBoundaryError`` naming the record and the choice, never an approximation. Where the
boundary falls between tokens of both splits, the sum equals the local model's, which tokenises
prompt and choice separately (tests/test_eval_served.py measures it).

Generation: ``/v1/completions`` with ``temperature`` 0 and ``max_tokens``; the server stops at
its own end-of-sequence tokens (vLLM: the model's ``generation_config``).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from globmed_jax.api_client import CompletionsClient, continuation_logprob

__all__ = ["ServedBackend"]


@dataclasses.dataclass
class ServedBackend:
    """``scoring.Backend`` over a ``CompletionsClient`` (one request per (prompt, choice); the
    client's cache makes a rerun free)."""

    client: CompletionsClient
    progress: bool = False
    kind: str = "served"

    def choice_logprobs(self, prompts: Sequence[str], choices: Sequence[Sequence[str]],
                        names: Sequence[str] = ()) -> list[np.ndarray]:
        names = list(names) or [f"prompt {i}" for i in range(len(prompts))]
        jobs = [(i, j, p + c, len(p)) for i, (p, cs) in enumerate(zip(prompts, choices)) for j, c in enumerate(cs)]
        for i, j, _, _ in jobs:
            if not choices[i][j]:
                raise ValueError(f"record {names[i]}: choice {j} is empty; nothing to score")
        lps = self.client.prompt_logprobs_many([text for _, _, text, _ in jobs], progress=self.progress)
        out = [np.zeros(len(cs), np.float64) for cs in choices]
        for (i, j, text, start), lp in zip(jobs, lps):
            out[i][j] = continuation_logprob(text, start, lp, where=f"record {names[i]} choice {choices[i][j]!r}")[0]
        return out

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        return self.client.complete_many(prompts, progress=self.progress, max_tokens=int(max_new_tokens),
                                         temperature=0.0)

    def info(self) -> dict[str, object]:
        """What the leaderboard row records about this backend."""
        return {"kind": self.kind, "loglik_available": True, "endpoint": "completions",
                "logprobs_format": self.client.detected or self.client.logprobs_format}
