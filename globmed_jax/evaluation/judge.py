"""LLM-as-judge for open QA: a 1-5 correctness score per answer from a chat model.

The judge sees the question, the reference answer and the candidate answer and must reply with
one integer; ``parse_score`` reads "4", "Score: 4", "**4**/5", "4 - mostly correct" (the first
integer 1-5 that is not part of a larger number) and gives None otherwise.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from globmed_jax.data.schema import Record
from globmed_jax.api_client import ChatClient

JUDGE_SYSTEM = "You are a strict medical examiner grading answers to medical questions."
JUDGE_TEMPLATE = (
    "Grade the candidate answer against the reference answer. The question and answers may be in any "
    "language; judge medical correctness and completeness, not style or language.\n\n"
    "Question: {question}\n\nReference answer: {reference}\n\nCandidate answer: {candidate}\n\n"
    "Score from 1 to 5: 1 = wrong or harmful, 2 = mostly wrong, 3 = partly correct, "
    "4 = correct with minor omissions, 5 = fully correct. Reply with the score only, a single integer."
)

_SCORE = re.compile(r"(?<![\d.])([1-5])(?![\d]|\.\d)")


def judge_messages(question: str, reference: str, candidate: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": JUDGE_TEMPLATE.format(question=question, reference=reference,
                                                              candidate=candidate or "(no answer)")}]


def parse_score(text: str | None) -> int | None:
    if not text:
        return None
    m = _SCORE.search(text)
    return int(m.group(1)) if m else None


def judge_answers(client: ChatClient, records: Sequence[Record], answers: Sequence[str | None], *,
                  progress: bool = False) -> list[int | None]:
    """One score (or None when unparseable) per (record, answer)."""
    if len(records) != len(answers):
        raise ValueError(f"{len(records)} records but {len(answers)} answers")
    question = [r.question if not r.context else f"{r.context}\n{r.question}" for r in records]
    convs = [judge_messages(q, r.answer, a or "") for q, r, a in zip(question, records, answers)]
    return [parse_score(t) for t in client.complete_many(convs, progress=progress, max_tokens=8)]


def mean_score(scores: Sequence[int | None]) -> float:
    """Mean of the parsed scores (unparsed ones are left out); NaN when none parsed."""
    vals = [s for s in scores if s is not None]
    return float(np.mean(vals)) if vals else float("nan")
