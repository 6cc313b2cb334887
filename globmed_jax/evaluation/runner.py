"""The GlobMed-Bench sweep: models x datasets x languages, resumable per cell.

For every model and every (dataset, language) cell of the evaluation split, the runner predicts,
scores and appends

* one line per item to ``<out_dir>/predictions/<model>.jsonl`` (written BEFORE the result row);
* one row to ``<out_dir>/results.jsonl``: model, dataset, language, family, n, accuracy, ci_low,
  ci_high (seeded percentile bootstrap), parse_failure_rate, seconds, setting, fingerprint (plus
  chrf, rouge_l and optionally judge_score for open_qa cells, whose accuracy is null;
  perm_accuracy and perm_consistency with the position-bias pass, ``config.permutations``, whose
  shifted items are scored in the same cell, in the model's own formulation, and written as
  predictions ``<id>#shift<s>`` (``evaluation.position_bias``); reasoning_truncated_rate in
  reasoning mode (``evaluation.reasoning``)). Closed cells also carry ``formulation`` (the
  model's own, which ``accuracy`` is), ``normalization`` and ``formulations`` (acc, and acc_norm
  for cloze, per formulation scored: ``config.formulations``, ``evaluation.formulations``); their
  predictions carry the same per item, and with few-shot prompts the ids of the item's ``shots``
  (from ``data.shots_split``, the dev split, never test; the same for every model).

Every row carries the cell's fingerprint (``evaluation.fingerprint``: model path and file hashes
or API model name and base URL, tokenizer file hashes, scoring mode, prompt settings, seed,
bootstrap resamples, the hash of the cell's records and shots; ``cell_fingerprint``): results rows
its readable fields and digest, predictions rows the digest. A rerun reuses a cell only when its
stored fingerprint equals the current one; a cell stored under another fingerprint stops the run
(``FingerprintMismatchError`` names the fields, old -> new) before anything is written, unless
``recompute=True``, which discards exactly those cells' rows and recomputes them.

Damaged or foreign lines (half-written, not JSON, JSON of another shape, a row for a model or cell
not in this run, predictions that do not match their cell's row) are logged as warnings naming
file and line, moved to ``<out_dir>/rejected.jsonl`` and their cells recomputed; every other line
is kept byte for byte. Files are rewritten only atomically (a temporary file, fsync, os.replace);
new rows are appended with flush + fsync, the result row after its predictions, so a crash leaves
at most one half-written last line, which the next run discards.

Local models are HF checkpoint directories loaded with ``models.from_pretrained`` (sharded
over all devices with ``sharding.make_mesh`` when there are several); ``api:<name>`` models go
through ``globmed_jax.api_client.ChatClient`` (generation only: a chat API returns no prompt
log-probabilities) and ``served:<name>`` models through ``api_client.CompletionsClient`` on
``<base_url>/completions`` (vLLM, SGLang, llama.cpp server, TGI; ``evaluation.served``): prompts
rendered with the spec's ``tokenizer`` (hub id or directory), scored by log-likelihood from the
server's prompt log-probabilities or generated. A served model without ``tokenizer`` is asked
through ``/chat/completions`` like an API model (generation only). Both keep a response cache at
``<out_dir>/api_cache/<model>-<base URL hash>.jsonl``. Every row records its ``backend``
(``{"kind": "local" | "served" | "api", "loglik_available": True | False | None (not asked,
generate mode), "logprobs_format", "endpoint", "note"}``); the leaderboard's Backends table shows it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import pathlib
import time
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from globmed_jax.data import prompts
from globmed_jax.data.families import get_family
from globmed_jax.data.prompts import PromptConfig, gold_label
from globmed_jax.data.schema import Record
from globmed_jax.evaluation import (
    extract, fingerprint, formulations, metrics, position_bias, prompting, protocol, reasoning,
)
from globmed_jax.api_client import APIConfig, ChatClient, CompletionsClient
from globmed_jax.models.hub import resolve_checkpoint
from globmed_jax.evaluation.scoring import Prediction

log = logging.getLogger(__name__)

RESULTS_NAME = "results.jsonl"
PREDICTIONS_DIR = "predictions"
REJECTED_NAME = "rejected.jsonl"  # discarded lines, kept for inspection; nothing reads them back
HASH_CACHE_NAME = ".hash_cache.json"
API_PREFIX = "api:"
SERVED_PREFIX = "served:"


class MissingCheckpointError(FileNotFoundError):
    """A local model directory that does not exist (the message says how to create it)."""


class SettingMismatchError(ValueError):
    """``out_dir`` holds results computed under another setting."""


class FingerprintMismatchError(SettingMismatchError):
    """Stored cells whose fingerprint differs from this run's; ``stale`` maps each (model,
    dataset, language) to its differing fields ("field: old -> new")."""

    def __init__(self, message: str, stale: Mapping[tuple[str, str, str], Sequence[str]]):
        super().__init__(message)
        self.stale = dict(stale)


class ResultsFileError(ValueError):
    """A results or predictions path that cannot be read as a file (e.g. a directory)."""


# ------------------------------------------------------------------------------------ data


def load_records(data: Any, split: str) -> list[Record]:
    """The records of ``split`` from ``data.source`` filtered to ``data.datasets`` /
    ``data.languages``."""
    if data.source == "mini":
        from globmed_jax.data import mini

        records = mini.generate(mini.MiniConfig(), split)
    elif data.source == "jsonl":
        from globmed_jax.data.records_io import read_split

        root = pathlib.Path(data.path)
        if not root.is_dir():
            raise FileNotFoundError(f"data.path {root} is not a directory of normalized JSONL "
                                    "(<dataset>/<language>/<split>.jsonl); build it with python -m data_pipelines.build")
        records = read_split(root, split)
    else:
        raise ValueError(f"data.source must be 'mini' or 'jsonl', got {data.source!r}")
    datasets, languages = set(data.datasets), set(data.languages)
    return [r for r in records if r.split == split and (not datasets or r.dataset in datasets)
            and (not languages or r.language in languages)]


def group_cells(records: Iterable[Record], max_per_cell: int = 0) -> dict[tuple[str, str], list[Record]]:
    """``{(dataset, language): records}`` sorted by source id (so ``max_per_cell`` keeps the
    same source items in every language) and cut to ``max_per_cell`` when positive."""
    cells: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in records:
        cells[(r.dataset, r.language)].append(r)
    out = {}
    for key in sorted(cells):
        recs = sorted(cells[key], key=lambda r: (r.source_id, r.id))
        out[key] = recs[:max_per_cell] if max_per_cell > 0 else recs
    return out


# ---------------------------------------------------------------------------------- models


def _prompt_config(config: Any, spec: Any, formulation: str | None = None) -> PromptConfig:
    thinking = {"": None, "true": True, "false": False}[str(spec.enable_thinking).lower()]
    mcqa_answer = formulations.FORMULATIONS[formulation] if formulation else spec.mcqa_answer or config.mcqa_answer
    return PromptConfig(system_prompt=config.system_prompt or None, enable_thinking=thinking, mcqa_answer=mcqa_answer)


def is_api(spec: Any) -> bool:
    return str(spec.path).startswith(API_PREFIX)


def is_served(spec: Any) -> bool:
    return str(spec.path).startswith(SERVED_PREFIX)


def _served_tokenizer(spec: Any) -> str:
    return str(spec.get("tokenizer", "")) if is_served(spec) else ""


def chat_only(spec: Any) -> bool:
    """An endpoint asked through /chat/completions: ``api:`` models, and ``served:`` ones without a
    tokenizer (no chat template here to render a completions prompt with)."""
    return is_api(spec) or (is_served(spec) and not _served_tokenizer(spec))


def endpoint_model(spec: Any) -> str:
    """The model name sent to the endpoint (the path after ``api:`` / ``served:``)."""
    path = str(spec.path)
    return path[len(API_PREFIX):] if is_api(spec) else path[len(SERVED_PREFIX):]


def effective_mode(config: Any, spec: Any) -> str:
    """The model's scoring mode: its own or the run's; chat-only endpoints generate (or reason)."""
    mode = spec.mode or config.mode
    if chat_only(spec):
        return reasoning.MODE if mode == reasoning.MODE else "generate"
    return mode


def check_local_path(name: str, spec: Any) -> pathlib.Path:
    path = resolve_checkpoint(spec.path)  # a directory or a hub id
    if not path.is_dir():
        hint = f" Create it with: {spec.setup}" if spec.setup else ""
        raise MissingCheckpointError(f"model {name!r}: checkpoint directory {path} does not exist.{hint}")
    return path


def _max_new_tokens(config: Any, records: Sequence[Record]) -> int:
    """Free-text answers get ``open_qa_max_new_tokens``; a letter or label needs few tokens."""
    return config.open_qa_max_new_tokens if any(not get_family(r.family).closed for r in records) else config.max_new_tokens


class LocalModel:
    """A local checkpoint, loaded on first use."""

    def __init__(self, name: str, spec: Any, config: Any):
        self.name, self.spec, self.config = name, spec, config
        self.path = check_local_path(name, spec)
        self._decoder = self._tokenizer = None

    def backend_info(self) -> dict[str, Any]:
        return {"kind": "local", "loglik_available": True}

    def load(self) -> None:
        import jax

        from globmed_jax.models import from_pretrained, load_tokenizer
        from globmed_jax.sharding import make_mesh

        mesh = make_mesh() if self.spec.shard and jax.device_count() > 1 else None
        log.info("loading %s from %s (%s, mesh=%s)", self.name, self.path, self.spec.dtype,
                 None if mesh is None else dict(mesh.shape))
        from globmed_jax.decode import Decoder
        from globmed_jax.models.tokenizer import pad_id

        model, _ = from_pretrained(self.path, dtype=self.spec.dtype, param_dtype=self.spec.param_dtype, mesh=mesh)
        self._tokenizer = load_tokenizer(self.path)
        self._decoder = Decoder(model, pad_id=pad_id(self._tokenizer))

    def predict(self, records: Sequence[Record], shots: Sequence[Record], formulation: str | None = None
                ) -> list[Prediction]:
        """``formulation``: "letter" | "cloze" (``evaluation.formulations``); None = the model's own."""
        from globmed_jax.evaluation import scoring

        if self._decoder is None:
            self.load()
        c = self.config
        if effective_mode(c, self.spec) == reasoning.MODE:
            return reasoning.predict(
                self._decoder, self._tokenizer, records, prompt_config=_prompt_config(c, self.spec),
                budget=c.reasoning_budget, answer_tokens=_max_new_tokens(c, records), few_shot=shots,
                num_shots=c.num_shots or None, instruction_language=c.instruction_language,
                batch_size=self.spec.batch_size or c.batch_size, seed=c.seed)
        return scoring.predict(
            self._decoder, self._tokenizer, records, mode=effective_mode(c, self.spec),
            prompt_config=_prompt_config(c, self.spec, formulation), few_shot=shots,
            num_shots=c.num_shots or None, instruction_language=c.instruction_language,
            batch_size=self.spec.batch_size or c.batch_size, max_new_tokens=_max_new_tokens(c, records),
            seed=c.data.shots_seed)


def api_cache_path(out_dir: pathlib.Path, stem: str, base_url: str) -> str:
    """The response cache of one endpoint. Its keys hold the model name and the request but not
    the server, so the base URL goes into the file name: another server never answers from it."""
    tag = hashlib.sha256(str(base_url).encode("utf-8")).hexdigest()[:12]
    return str(out_dir / "api_cache" / f"{stem}-{tag}.jsonl")


class APIModel:
    """An OpenAI-compatible chat endpoint; answers are generated and parsed like local generations."""

    def __init__(self, name: str, spec: Any, config: Any, out_dir: pathlib.Path):
        self.name, self.spec, self.config = name, spec, config
        if not spec.base_url:
            raise ValueError(f"model {name!r}: API models need models.{name}.base_url")
        self.client = ChatClient(APIConfig.from_mapping(
            spec, model=endpoint_model(spec), cache_path=api_cache_path(out_dir, name, spec.base_url)))

    def backend_info(self) -> dict[str, Any]:
        return {"kind": "served" if is_served(self.spec) else "api", "loglik_available": False,
                "endpoint": "chat/completions", "note": "chat endpoint: generation only (no prompt log-probabilities)"}

    def predict(self, records: Sequence[Record], shots: Sequence[Record], formulation: str | None = None
                ) -> list[Prediction]:
        c = self.config
        base = _prompt_config(c, self.spec, formulation)
        convs = []
        for r in records:
            cfg = prompting.config_for(r, base, c.instruction_language)
            chosen = prompting.select_shots(r, shots, c.num_shots, c.data.shots_seed) if c.num_shots else ()
            convs.append(prompts.build_messages(r, cfg, chosen))
        if effective_mode(c, self.spec) == reasoning.MODE:  # the server's template decides on thinking
            budget = reasoning.check_budget(c.reasoning_budget) + _max_new_tokens(c, records)
            return [reasoning.parse(t, r) for r, t in zip(records, self.client.complete_many(convs, max_tokens=budget))]
        texts = self.client.complete_many(convs, max_tokens=_max_new_tokens(c, records))
        out = []
        for r, t in zip(records, texts):
            parsed = extract.parse_answer(t, r)
            out.append(Prediction(r.id, parsed, parsed is None, t))
        return out


class ServedModel:
    """A model behind ``<base_url>/completions``, prompted with its own chat template rendered
    here (``spec.tokenizer``), scored through ``evaluation.served.ServedBackend``."""

    def __init__(self, name: str, spec: Any, config: Any, out_dir: pathlib.Path):
        from globmed_jax.evaluation.served import ServedBackend
        from globmed_jax.models.tokenizer import load_tokenizer

        self.name, self.spec, self.config = name, spec, config
        if not spec.base_url:
            raise ValueError(f"model {name!r}: served models need models.{name}.base_url (e.g. http://host:8000/v1)")
        if effective_mode(config, spec) == reasoning.MODE:
            raise ValueError(f"model {name!r}: reasoning mode is not supported for served: models with a "
                             f"tokenizer yet; leave models.{name}.tokenizer empty to ask /chat/completions instead")
        self.tokenizer = load_tokenizer(_served_tokenizer(spec))
        client = CompletionsClient(
            APIConfig.from_mapping(spec, model=endpoint_model(spec),
                                   cache_path=api_cache_path(out_dir, name, spec.base_url)),
            logprobs_format=str(spec.get("logprobs_format", "auto")))
        self.backend = ServedBackend(client, progress=bool(config.progress))

    def backend_info(self) -> dict[str, Any]:
        info = self.backend.info()
        if effective_mode(self.config, self.spec) != "loglik":  # generated by choice: the server was not probed
            info.update(loglik_available=None, logprobs_format="", note="generate mode: log-probabilities not asked")
        return info

    def predict(self, records: Sequence[Record], shots: Sequence[Record], formulation: str | None = None
                ) -> list[Prediction]:
        from globmed_jax.evaluation import scoring

        c = self.config
        return scoring.predict_with(
            self.backend, self.tokenizer, records, mode=effective_mode(c, self.spec),
            prompt_config=_prompt_config(c, self.spec, formulation), few_shot=shots,
            num_shots=c.num_shots or None, instruction_language=c.instruction_language,
            max_new_tokens=_max_new_tokens(c, records), seed=c.data.shots_seed)


def make_model(name: str, spec: Any, config: Any, out_dir: pathlib.Path) -> Any:
    """The runner's model object of a spec: local, served (completions) or chat endpoint."""
    if chat_only(spec):
        return APIModel(name, spec, config, out_dir)
    if is_served(spec):
        return ServedModel(name, spec, config, out_dir)
    return LocalModel(name, spec, config)


# ----------------------------------------------------------------------------- fingerprints


Cell = tuple[str, str, str]  # (model, dataset, language)


def model_fingerprint_fields(name: str, spec: Any, cache: fingerprint.HashCache) -> dict[str, Any]:
    """What identifies the model: for an API model its name and base URL (never the key), for a
    local one its resolved path, weight / config file hashes, tokenizer file hashes and dtypes."""
    if chat_only(spec):
        return {"model.kind": "api" if is_api(spec) else "served_chat", "model.api_model": endpoint_model(spec),
                "model.base_url": str(spec.base_url)}
    if is_served(spec):  # the served weights are the server's; the prompt is rendered with this tokenizer
        tok_dir = resolve_checkpoint(_served_tokenizer(spec))
        if not tok_dir.is_dir():
            raise MissingCheckpointError(f"model {name!r}: tokenizer directory {tok_dir} does not exist")
        return {"model.kind": "served", "model.api_model": endpoint_model(spec), "model.base_url": str(spec.base_url),
                "model.logprobs_format": str(spec.get("logprobs_format", "auto")),
                "tokenizer.files": fingerprint.checkpoint_files(tok_dir, cache)[1]}
    path = check_local_path(name, spec).resolve()
    files, tokenizer_files = fingerprint.checkpoint_files(path, cache)
    return {"model.kind": "local", "model.path": str(path), "model.files": files,
            "tokenizer.files": tokenizer_files, "model.dtype": str(spec.dtype),
            "model.param_dtype": str(spec.param_dtype)}


def cell_fingerprint_fields(config: Any, spec: Any, records: Sequence[Record],
                            shots: Sequence[Record]) -> dict[str, Any]:
    """What, besides the model, determines a cell's row: scoring mode, prompt, seed, bootstrap,
    the data (its records' hash), the protocol settings (``protocol.fingerprint_fields``:
    formulations, few-shot split / seed / k / pool, ...) and, for open QA, the judge. Batch size
    and sharding are left out: they change speed, not answers."""
    mode = effective_mode(config, spec)
    closed = all(get_family(r.family).closed for r in records)
    data = config.data
    fields = {"scoring.mode": mode, "prompt.mcqa_answer": spec.mcqa_answer or config.mcqa_answer,
              "prompt.instruction_language": config.instruction_language,
              "prompt.system_prompt": config.system_prompt, "prompt.enable_thinking": str(spec.enable_thinking),
              "seed": int(config.seed), "bootstrap_resamples": int(config.bootstrap_resamples),
              "data.source": data.source,
              "data.path": str(pathlib.Path(data.path).resolve()) if data.source == "jsonl" else "",
              "data.split": data.split, "data.max_per_cell": int(data.max_per_cell),
              "data.records": fingerprint.records_digest(records)}
    if mode != "loglik" or not closed:
        fields["prompt.max_new_tokens"] = _max_new_tokens(config, records)
    fields.update(protocol.fingerprint_fields(protocol.CellSettings(config, spec, mode, records, shots)))
    if config.judge.enabled and not closed:
        fields.update({"judge.model": config.judge.model, "judge.base_url": config.judge.base_url})
    return fields


def cell_fingerprint(model_fields: Mapping[str, Any], config: Any, spec: Any, records: Sequence[Record],
                     shots: Sequence[Record]) -> dict[str, Any]:
    """``{"digest": ..., "fields": {...}}`` of one (model, dataset, language) cell."""
    return fingerprint.make({**model_fields, **cell_fingerprint_fields(config, spec, records, shots)})


# ------------------------------------------------------------------------------ rows on disk


@dataclasses.dataclass
class Line:
    """One line of a results or predictions file, as read."""

    file: pathlib.Path
    number: int  # 1-based
    raw: bytes  # with its newline, rewritten unchanged when kept
    row: dict[str, Any] | None = None
    problem: str = ""  # why the line is unusable ("" = usable)


_RESULT_KEYS = {"model": str, "dataset": str, "language": str, "family": str, "n": int}
_PREDICTION_KEYS = {"model": str, "dataset": str, "language": str, "record_id": str}


def _shape_problem(row: Any, keys: Mapping[str, type]) -> str:
    if not isinstance(row, dict):
        return f"JSON {type(row).__name__}, not a row object"
    bad = [k for k, t in keys.items() if not isinstance(row.get(k), t) or isinstance(row.get(k), bool)]
    return f"not a row of this file (missing or mistyped: {', '.join(bad)})" if bad else ""


def _result_problem(row: Any) -> str:
    problem = _shape_problem(row, _RESULT_KEYS)
    fp = row.get("fingerprint") if not problem else None
    if problem or fp is None:  # no fingerprint at all: an older row, handled as stale
        return problem
    if not (isinstance(fp, dict) and isinstance(fp.get("fields"), dict) and isinstance(fp.get("digest"), str)):
        return "malformed fingerprint"
    if fingerprint.digest_of(fp["fields"]) != fp["digest"]:
        return "fingerprint digest does not match its fields (edited by hand?)"
    return ""


def _prediction_problem(row: Any) -> str:
    problem = _shape_problem(row, _PREDICTION_KEYS)
    if not problem and not isinstance(row.get("fingerprint"), str):
        problem = "no fingerprint digest"
    return problem


def read_lines(path: pathlib.Path, kind: str) -> list[Line]:
    """Every line of a results (``kind="results"``) or predictions file, each parsed and checked;
    unusable ones carry their ``problem``. Raises ResultsFileError when ``path`` is not a file."""
    if not path.exists():
        return []
    if not path.is_file():
        raise ResultsFileError(f"{path} exists but is not a regular file; move it out of the way")
    pieces = path.read_bytes().split(b"\n")
    check = _result_problem if kind == "results" else _prediction_problem
    lines = []
    for i, piece in enumerate(pieces, 1):
        last = i == len(pieces)
        if last and not piece:  # the file ends with a newline: no line after it
            break
        line = Line(path, i, piece if last else piece + b"\n")
        if last:
            line.problem = "half-written last line (no newline at the end)"
        elif not piece.strip():
            line.problem = "blank line"
        else:
            try:
                line.row = json.loads(piece.decode("utf-8"))
                line.problem = check(line.row)
            except (UnicodeDecodeError, ValueError):
                line.problem = "not JSON"
        lines.append(line)
    return lines


def _cell_of(row: Mapping[str, Any]) -> Cell:
    return (row["model"], row["dataset"], row["language"])


def read_results(out_dir: str | pathlib.Path) -> list[dict[str, Any]]:
    """The usable rows of ``results.jsonl`` (unusable lines are logged and skipped)."""
    lines = read_lines(pathlib.Path(out_dir) / RESULTS_NAME, "results")
    _warn([(l, l.problem) for l in lines if l.problem])
    return [l.row for l in lines if not l.problem]


def read_predictions(out_dir: str | pathlib.Path) -> dict[str, list[dict[str, Any]]]:
    """``{model: prediction rows}`` of the cells that have a results row, only rows carrying that
    row's fingerprint digest, de-duplicated on (dataset, language, record_id), last wins."""
    out_dir = pathlib.Path(out_dir)
    digests = {_cell_of(r): (r.get("fingerprint") or {}).get("digest") for r in read_results(out_dir)}
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((out_dir / PREDICTIONS_DIR).glob("*.jsonl")):
        rows: dict[tuple, dict] = {}
        for line in read_lines(path, "predictions"):
            row = line.row
            if not line.problem and digests.get(_cell_of(row)) == row["fingerprint"]:
                rows[(row["dataset"], row["language"], row["record_id"])] = row
        for row in rows.values():
            out.setdefault(row["model"], []).append(row)
    return out


def _warn(dropped: Sequence[tuple[Line, str]]) -> None:
    """One warning per (file, reason), naming the line numbers."""
    grouped: dict[tuple[pathlib.Path, str], list[int]] = defaultdict(list)
    for line, reason in dropped:
        grouped[(line.file, reason)].append(line.number)
    for (file, reason), numbers in grouped.items():
        shown = ", ".join(map(str, numbers[:20])) + (f", ... ({len(numbers)} lines)" if len(numbers) > 20 else "")
        log.warning("%s: line %s: %s", file, shown, reason)


def _fsync_dir(path: pathlib.Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not every platform opens directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_atomically(path: pathlib.Path, data: bytes) -> None:
    """``path`` holds exactly ``data`` or its old content, never a mix, even across a crash."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _append(path: pathlib.Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Appends and fsyncs before returning: a result row is on disk only after its predictions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as fh:
        for row in rows:
            fh.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def _discard(out_dir: pathlib.Path, files: Mapping[pathlib.Path, Sequence[Line]],
             dropped: Sequence[tuple[Line, str]]) -> None:
    """Moves ``dropped`` lines to rejected.jsonl, then rewrites each file that lost lines with the
    rest, byte for byte (predictions files left empty are removed)."""
    if not dropped:
        return
    gone = {(l.file, l.number) for l, _ in dropped}
    _append(out_dir / REJECTED_NAME, [{"file": str(l.file), "line": l.number, "reason": reason,
                                      "text": l.raw.decode("utf-8", "replace"), "at": time.time()}
                                     for l, reason in dropped])
    for path in {l.file for l, _ in dropped}:
        kept = b"".join(l.raw for l in files[path] if (path, l.number) not in gone)
        if kept or path.name == RESULTS_NAME:
            _replace_atomically(path, kept)
        else:
            path.unlink()


# --------------------------------------------------------------------------------- resume


@dataclasses.dataclass
class ResumePlan:
    """What a run reuses and what it discards, decided before anything is written."""

    done: set[Cell]
    dropped: list[tuple[Line, str]]
    warn: list[tuple[Line, str]]
    stale: dict[Cell, list[str]]


def _plan_results(lines: Sequence[Line], wanted: Mapping[Cell, Mapping[str, Any]], recompute: bool) -> ResumePlan:
    plan = ResumePlan(set(), [], [], {})
    by_cell: dict[Cell, list[Line]] = defaultdict(list)
    for line in lines:
        if line.problem:
            plan.warn.append((line, f"{line.problem}; discarded, its cell is recomputed"))
        elif _cell_of(line.row) not in wanted:
            plan.warn.append((line, "a row for a model/cell not in this run; discarded"))
        else:
            by_cell[_cell_of(line.row)].append(line)
    for cell, cell_lines in by_cell.items():
        if len(cell_lines) > 1:
            plan.warn += [(l, f"one of {len(cell_lines)} rows for {'/'.join(cell)}; all discarded, the cell is recomputed")
                          for l in cell_lines]
            continue
        line, new = cell_lines[0], wanted[cell]
        old = line.row.get("fingerprint")
        if old is None:
            diffs = ["fingerprint: <absent> (row written before rows had fingerprints)"]
        else:
            diffs = fingerprint.diff(old["fields"], new["fields"]) if old["digest"] != new["digest"] else []
        if not diffs:
            plan.done.add(cell)
        elif recompute:
            plan.dropped.append((line, "stale, discarded by recompute=True: " + "; ".join(diffs)))
        else:
            plan.stale[cell] = diffs
    return plan


def _plan_predictions(plan: ResumePlan, files: Mapping[pathlib.Path, Sequence[Line]],
                      wanted: Mapping[Cell, Mapping[str, Any]], cell_ids: Mapping[Cell, list[str]],
                      results_lines: Sequence[Line]) -> None:
    """Keeps a done cell only if its predictions are exactly its records under its digest; every
    other predictions line is discarded (with a warning unless it belongs to a recomputed cell)."""
    kept: dict[Cell, list[Line]] = defaultdict(list)
    for path, lines in files.items():
        for line in lines:
            row = line.row
            if line.problem:
                plan.warn.append((line, f"{line.problem}; discarded"))
            elif _cell_of(row) not in wanted or row["model"] != path.stem:
                plan.warn.append((line, "a prediction for a model/cell not in this run (or in another model's file); discarded"))
            elif _cell_of(row) not in plan.done:
                plan.dropped.append((line, "prediction of a cell that is (re)computed"))
            elif row["fingerprint"] != wanted[_cell_of(row)]["digest"]:
                plan.warn.append((line, "prediction under another fingerprint than its cell's row; discarded"))
            else:
                kept[_cell_of(row)].append(line)
    for cell in sorted(plan.done):
        ids = sorted(l.row["record_id"] for l in kept.get(cell, ()))
        if ids != sorted(cell_ids[cell]):
            plan.done.discard(cell)
            reason = (f"predictions of {'/'.join(cell)} are incomplete ({len(ids)} rows for "
                      f"{len(cell_ids[cell])} records); the cell is recomputed")
            plan.warn += [(l, reason) for l in results_lines if not l.problem and _cell_of(l.row) == cell]
            plan.dropped += [(l, reason) for l in kept.get(cell, ())]


def _mismatch_error(results: pathlib.Path, stale: Mapping[Cell, Sequence[str]]) -> FingerprintMismatchError:
    groups: dict[tuple[str, tuple[str, ...]], list[Cell]] = defaultdict(list)
    for cell, diffs in sorted(stale.items()):
        groups[(cell[0], tuple(diffs))].append(cell)
    parts = []
    for (model, diffs), cells in groups.items():
        names = ", ".join(f"{d}/{l}" for _, d, l in cells[:6]) + (", ..." if len(cells) > 6 else "")
        parts.append(f"  {model} ({len(cells)} cell(s): {names}):\n    " + "\n    ".join(diffs))
    return FingerprintMismatchError(
        f"{results} holds {len(stale)} cell(s) computed under a different fingerprint than this run "
        "(field: stored -> now):\n" + "\n".join(parts) + "\nNothing was reused or changed. Rerun with "
        "recompute=True (--config.recompute=True) to discard and recompute exactly these cells, or use "
        "another out_dir.", stale)


def plan_resume(out_dir: pathlib.Path, wanted: Mapping[Cell, Mapping[str, Any]], cell_ids: Mapping[Cell, list[str]],
                recompute: bool) -> tuple[ResumePlan, dict[pathlib.Path, list[Line]]]:
    """Reads results.jsonl and predictions/*.jsonl against this run's fingerprints (``wanted``);
    raises FingerprintMismatchError (nothing written) for stale cells unless ``recompute``."""
    results = out_dir / RESULTS_NAME
    files = {results: read_lines(results, "results")}
    plan = _plan_results(files[results], wanted, recompute)
    if plan.stale:
        raise _mismatch_error(results, plan.stale)
    pred_dir = out_dir / PREDICTIONS_DIR
    if pred_dir.exists() and not pred_dir.is_dir():
        raise ResultsFileError(f"{pred_dir} exists but is not a directory; move it out of the way")
    preds = {p: read_lines(p, "predictions") for p in sorted(pred_dir.glob("*.jsonl"))} if pred_dir.is_dir() else {}
    _plan_predictions(plan, preds, wanted, cell_ids, files[results])
    return plan, {**files, **preds}


# ------------------------------------------------------------------------------- new rows


def _finite(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def cell_row(model: str, records: Sequence[Record], preds: Sequence[Prediction], *, seconds: float,
             setting: Mapping[str, Any], seed: int, resamples: int,
             judge_scores: Sequence[int | None] | None = None) -> dict[str, Any]:
    """The results.jsonl row of one cell."""
    r0 = records[0]
    row: dict[str, Any] = {"model": model, "dataset": r0.dataset, "language": r0.language, "family": r0.family,
                           "n": len(records)}
    if not get_family(r0.family).closed:
        hyps = [p.predicted or "" for p in preds]
        refs = [r.answer for r in records]
        row.update(accuracy=None, ci_low=None, ci_high=None,
                   chrf=metrics.chrf(hyps, refs), rouge_l=metrics.rouge_l(hyps, refs))
        if judge_scores is not None:
            from globmed_jax.evaluation.judge import mean_score

            row["judge_score"] = _finite(mean_score(judge_scores))
    else:
        correct = [p.predicted is not None and p.predicted == gold_label(r) for r, p in zip(records, preds)]
        lo, hi = metrics.bootstrap_ci(correct, num_resamples=resamples, seed=seed)
        row.update(accuracy=metrics.accuracy(correct), ci_low=lo, ci_high=hi)
    row.update(parse_failure_rate=float(np.mean([p.parse_failed for p in preds])), seconds=round(seconds, 3),
               setting=dict(setting))
    return row


def prediction_rows(model: str, records: Sequence[Record], preds: Sequence[Prediction],
                    digest: str = "") -> list[dict[str, Any]]:
    """One row per item; ``digest``: the cell's fingerprint digest (its readable fields are in the
    result row), so a prediction is never read against another computation of its cell."""
    out = []
    for r, p in zip(records, preds):
        gold = gold_label(r)
        out.append({"model": model, "dataset": r.dataset, "language": r.language, "family": r.family,
                    "record_id": r.id, "source_id": r.source_id, "gold": gold, "predicted": p.predicted,
                    "correct": None if not get_family(r.family).closed else p.predicted == gold,
                    "parse_failed": p.parse_failed, "text": p.text, "fingerprint": digest})
    return out


# -------------------------------------------------------------------------------------- run


def setting_of(config: Any, spec: Any) -> dict[str, Any]:
    """The run-level settings of a row, kept in ``setting`` for readers of older rows; resuming
    compares the fingerprint, which holds all of these and more."""
    mode = effective_mode(config, spec)
    setting = {"mode": mode, "num_shots": int(config.num_shots), "formulations": list(formulations.scored(config, spec)),
               "instruction_language": config.instruction_language, "split": config.data.split,
               "max_per_cell": int(config.data.max_per_cell), "system_prompt": config.system_prompt,
               "enable_thinking": str(spec.enable_thinking),
               "open_qa_max_new_tokens": int(config.open_qa_max_new_tokens)}
    if mode == "generate":
        setting["max_new_tokens"] = int(config.max_new_tokens)
    return setting


def _judge_client(config: Any, out_dir: pathlib.Path) -> ChatClient | None:
    j = config.judge
    if not j.enabled:
        return None
    if not (j.model and j.base_url):
        raise ValueError("judge.enabled needs judge.model and judge.base_url")
    return ChatClient(APIConfig.from_mapping(
        j, cache_path=api_cache_path(out_dir, f"judge_{j.model.replace('/', '_')}", j.base_url)))


def _shot_pools(config: Any, cells: Mapping[tuple[str, str], Sequence[Record]]) -> dict[tuple[str, str], list[Record]]:
    """Each cell's shot pool: the shots split (the dev split by default) of its dataset and
    language, else of its dataset. Never the evaluated split, and never a record of an evaluated
    source item (a translation of a test item included); a dataset without any shot is an error."""
    if not config.num_shots:
        return {key: [] for key in cells}
    data = config.data
    if data.shots_split in (data.split, "test"):
        raise ValueError(f"data.shots_split={data.shots_split!r}: few-shot examples must not come from the "
                         f"evaluated split ({data.split!r}) or from test; use the dev split ('validation', the default) "
                         "or 'train' when validation is the evaluated split")
    evaluated = {(r.dataset, r.source_id) for recs in cells.values() for r in recs}
    by_dataset: dict[str, list[Record]] = defaultdict(list)
    for r in load_records(data, data.shots_split):
        if (r.dataset, r.source_id) not in evaluated:
            by_dataset[r.dataset].append(r)
    missing = sorted({d for d, _ in cells if not by_dataset.get(d)})
    if missing:
        raise ValueError(f"num_shots={config.num_shots} but no {data.shots_split!r} records for dataset(s) "
                         f"{missing} in data.source={data.source!r}; build the data with data_pipelines.build "
                         "(it carves a dev split from train) or set data.shots_split")
    return {(d, l): [r for r in by_dataset[d] if r.language == l] or by_dataset[d] for d, l in cells}


def _predict_cell(model: Any, config: Any, spec: Any, recs: Sequence[Record], pool: Sequence[Record]
                  ) -> tuple[list[Prediction], dict[str, list[Prediction]]]:
    """The model's predictions in its own formulation, and per scored formulation (closed cells)."""
    if not all(get_family(r.family).closed for r in recs):
        return model.predict(recs, pool), {}
    by_form = formulations.predict_all(lambda f: model.predict(recs, pool, f), recs,
                                       formulations.scored(config, spec))
    return by_form[formulations.primary(config, spec)], by_form


def _shots_used(config: Any, recs: Sequence[Record], pool: Sequence[Record]) -> list[list[str]]:
    """The ids of each item's shots, as the models' prompts select them (the same for every model)."""
    k = int(config.num_shots)
    return [[s.id for s in prompting.select_shots(r, pool, k, config.data.shots_seed)] if k else [] for r in recs]


def _fingerprints(config: Any, cells: Mapping[tuple[str, str], Sequence[Record]],
                  pools: Mapping[tuple[str, str], Sequence[Record]], cache: fingerprint.HashCache
                  ) -> dict[Cell, dict[str, Any]]:
    out = {}
    for name, spec in config.models.items():
        model_fields = model_fingerprint_fields(name, spec, cache)
        for key, recs in cells.items():
            out[(name, *key)] = cell_fingerprint(model_fields, config, spec, recs, pools[key])
    return out


def run(config: Any) -> dict[str, Any]:
    """Runs every cell not already done under the same fingerprint; returns ``{"done": [...],
    "skipped": [...], "loaded": [...], "out_dir": ...}`` (cells as (model, dataset, language)).

    Raises FingerprintMismatchError, before writing anything, when a stored cell was computed
    under another fingerprint and ``config.recompute`` is false."""
    out_dir = pathlib.Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not len(config.models):
        raise ValueError("config.models is empty")
    records = load_records(config.data, config.data.split)
    if not records:
        raise ValueError(f"no {config.data.split} records for datasets={tuple(config.data.datasets)} "
                         f"languages={tuple(config.data.languages)} in data.source={config.data.source!r}")
    cells = group_cells(records, config.data.max_per_cell)
    pools = _shot_pools(config, cells)
    cache = fingerprint.HashCache(out_dir / HASH_CACHE_NAME)
    wanted = _fingerprints(config, cells, pools, cache)  # fails on a missing local model first
    cache.save()
    extra = {key: position_bias.shifted_records(recs, config.permutations) for key, recs in cells.items()}
    cell_ids = {(name, *key): position_bias.row_ids([*recs, *extra[key]]) for name in config.models
                for key, recs in cells.items()}
    plan, files = plan_resume(out_dir, wanted, cell_ids, bool(config.recompute))
    _warn(plan.warn)
    if plan.dropped:
        log.info("discarding %d stale or unfinished lines (moved to %s)", len(plan.dropped), out_dir / REJECTED_NAME)
    _discard(out_dir, files, plan.dropped + plan.warn)

    pending = {name: [key for key in cells if (name, *key) not in plan.done] for name in config.models}
    skipped = [(name, *key) for name in config.models for key in cells if (name, *key) in plan.done]
    judge = _judge_client(config, out_dir)
    total = sum(len(v) for v in pending.values())
    bar = None
    if config.progress and total:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="GlobMed-Bench", unit="cell")
    done, loaded = [], []
    for name, spec in config.models.items():
        if not pending[name]:
            continue
        model = make_model(name, spec, config, out_dir)
        loaded.append(name)
        setting = setting_of(config, spec)
        for dataset, language in pending[name]:
            recs = cells[(dataset, language)]
            fp = wanted[(name, dataset, language)]
            if bar is not None:
                bar.set_description(f"{name} {dataset} {language}")
            t0 = time.perf_counter()
            preds, by_form = _predict_cell(model, config, spec, recs, pools[(dataset, language)])
            shifted_recs = extra[(dataset, language)]  # shifted copies: the position-bias pass
            shifted = model.predict(shifted_recs, pools[(dataset, language)]) if shifted_recs else []
            scores = None
            if judge is not None and not get_family(recs[0].family).closed:
                from globmed_jax.evaluation.judge import judge_answers

                scores = judge_answers(judge, recs, [p.predicted for p in preds])
            row = cell_row(name, recs, preds, seconds=time.perf_counter() - t0, setting=setting,
                           seed=config.seed, resamples=config.bootstrap_resamples, judge_scores=scores)
            pred_rows = prediction_rows(name, recs, preds, fp["digest"])
            if by_form:
                row.update(formulations.cell_fields(recs, by_form, formulations.primary(config, spec),
                                                    resamples=config.bootstrap_resamples, seed=config.seed))
                for pr, item_fields in zip(pred_rows, formulations.item_fields(recs, by_form)):
                    pr.update(item_fields)
            if config.num_shots:
                for pr, shots in zip(pred_rows, _shots_used(config, recs, pools[(dataset, language)])):
                    pr["shots"] = shots
            row["fingerprint"] = fp
            row["backend"] = model.backend_info()
            if shifted_recs:
                pred_rows += prediction_rows(name, shifted_recs, shifted, fp["digest"])
                position_bias.tag_rows(pred_rows, [*recs, *shifted_recs])
            row.update({**position_bias.cell_fields(pred_rows), **reasoning.cell_fields(preds, setting["mode"])})
            _append(out_dir / PREDICTIONS_DIR / f"{name}.jsonl", pred_rows)
            _append(out_dir / RESULTS_NAME, [row])
            done.append((name, dataset, language))
            if bar is not None:
                bar.update(1)
                if row["accuracy"] is not None:
                    bar.set_postfix(acc=f"{row['accuracy']:.3f}")
        del model  # free device memory before the next model
    if bar is not None:
        bar.close()
    return {"done": done, "skipped": skipped, "loaded": loaded, "out_dir": str(out_dir)}
