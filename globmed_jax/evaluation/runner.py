"""The GlobMed-Bench sweep: models x datasets x languages, resumable per cell.

For every model and every (dataset, language) cell of the evaluation split, the runner predicts,
scores and appends

* one row to ``<out_dir>/results.jsonl``: model, dataset, language, task, n, accuracy, ci_low,
  ci_high (seeded percentile bootstrap), parse_failure_rate, seconds, setting (plus chrf,
  rouge_l and optionally judge_score for open_qa cells, whose accuracy is null);
* one line per item to ``<out_dir>/predictions/<model>.jsonl`` (written BEFORE the result row,
  so a row always has its predictions; a cell interrupted in between is redone and its
  predictions appear twice, readers keep the last).

A rerun skips every cell that already has a row, and loads a model only if one of its cells is
missing. A row written under a different setting (mode, shots, instruction language, split,
max_per_cell, generation budgets, ...: ``setting_of``) stops the run instead of silently
mixing settings in one table.

Local models are HF checkpoint directories loaded with ``models.from_pretrained`` (sharded
over all devices with ``sharding.make_mesh`` when there are several); ``api:<name>`` models go
through ``globmed_jax.api_client.ChatClient`` with a response cache at ``<out_dir>/api_cache/<model>.jsonl``.
"""

from __future__ import annotations

import json
import logging
import math
import pathlib
import time
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from globmed_jax.data import prompts
from globmed_jax.data.families import get_family
from globmed_jax.data.prompts import PromptConfig, gold_label
from globmed_jax.data.schema import Record
from globmed_jax.evaluation import extract, metrics, prompting
from globmed_jax.api_client import APIConfig, ChatClient
from globmed_jax.models.hub import resolve_checkpoint
from globmed_jax.evaluation.scoring import Prediction

log = logging.getLogger(__name__)

RESULTS_NAME = "results.jsonl"
PREDICTIONS_DIR = "predictions"
API_PREFIX = "api:"


class MissingCheckpointError(FileNotFoundError):
    """A local model directory that does not exist (the message says how to create it)."""


class SettingMismatchError(ValueError):
    """``out_dir`` holds results computed under another setting."""


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


def _prompt_config(config: Any, spec: Any) -> PromptConfig:
    thinking = {"": None, "true": True, "false": False}[str(spec.enable_thinking).lower()]
    return PromptConfig(system_prompt=config.system_prompt or None, enable_thinking=thinking,
                        mcqa_answer=spec.mcqa_answer or config.mcqa_answer)


def is_api(spec: Any) -> bool:
    return str(spec.path).startswith(API_PREFIX)


def effective_mode(config: Any, spec: Any) -> str:
    return "generate" if is_api(spec) else (spec.mode or config.mode)


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

    def predict(self, records: Sequence[Record], shots: Sequence[Record]) -> list[Prediction]:
        from globmed_jax.evaluation import scoring

        if self._decoder is None:
            self.load()
        c = self.config
        return scoring.predict(
            self._decoder, self._tokenizer, records, mode=effective_mode(c, self.spec),
            prompt_config=_prompt_config(c, self.spec), few_shot=shots, num_shots=c.num_shots or None,
            instruction_language=c.instruction_language, batch_size=self.spec.batch_size or c.batch_size,
            max_new_tokens=_max_new_tokens(c, records), seed=c.seed)


class APIModel:
    """An OpenAI-compatible endpoint; answers are generated and parsed like local generations."""

    def __init__(self, name: str, spec: Any, config: Any, out_dir: pathlib.Path):
        self.name, self.spec, self.config = name, spec, config
        if not spec.base_url:
            raise ValueError(f"model {name!r}: API models need models.{name}.base_url")
        self.client = ChatClient(APIConfig.from_mapping(
            spec, model=str(spec.path)[len(API_PREFIX):], cache_path=str(out_dir / "api_cache" / f"{name}.jsonl")))

    def predict(self, records: Sequence[Record], shots: Sequence[Record]) -> list[Prediction]:
        c = self.config
        base = _prompt_config(c, self.spec)
        convs = []
        for r in records:
            cfg = prompting.config_for(r, base, c.instruction_language)
            chosen = prompting.select_shots(r, shots, c.num_shots, c.seed) if c.num_shots else ()
            convs.append(prompts.build_messages(r, cfg, chosen))
        texts = self.client.complete_many(convs, max_tokens=_max_new_tokens(c, records))
        out = []
        for r, t in zip(records, texts):
            parsed = extract.parse_answer(t, r)
            out.append(Prediction(r.id, parsed, parsed is None, t))
        return out


# --------------------------------------------------------------------------------- results


def read_results(out_dir: str | pathlib.Path) -> list[dict[str, Any]]:
    path = pathlib.Path(out_dir) / RESULTS_NAME
    if not path.exists():
        return []
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    log.warning("%s: skipping a truncated line (that cell will be redone)", path)
    return rows


def read_predictions(out_dir: str | pathlib.Path) -> dict[str, list[dict[str, Any]]]:
    """``{model: prediction rows}``, de-duplicated on (dataset, language, record_id), last wins."""
    out = {}
    for path in sorted((pathlib.Path(out_dir) / PREDICTIONS_DIR).glob("*.jsonl")):
        rows: dict[tuple, dict] = {}
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                rows[(row["dataset"], row["language"], row["record_id"])] = row
        if rows:
            out[next(iter(rows.values()))["model"]] = list(rows.values())
    return out


def _append(path: pathlib.Path, rows: Iterable[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        fh.flush()


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


def prediction_rows(model: str, records: Sequence[Record], preds: Sequence[Prediction]) -> list[dict[str, Any]]:
    out = []
    for r, p in zip(records, preds):
        gold = gold_label(r)
        out.append({"model": model, "dataset": r.dataset, "language": r.language, "family": r.family,
                    "record_id": r.id, "source_id": r.source_id, "gold": gold, "predicted": p.predicted,
                    "correct": None if not get_family(r.family).closed else p.predicted == gold,
                    "parse_failed": p.parse_failed, "text": p.text})
    return out


# -------------------------------------------------------------------------------------- run


def setting_of(config: Any, spec: Any) -> dict[str, Any]:
    """What must match for a stored row to count as done."""
    mode = effective_mode(config, spec)
    setting = {"mode": mode, "num_shots": int(config.num_shots),
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
        j, cache_path=str(out_dir / "api_cache" / f"judge_{j.model.replace('/', '_')}.jsonl")))


def run(config: Any) -> dict[str, Any]:
    """Runs every missing cell; returns ``{"done": [...], "skipped": [...], "loaded": [...],
    "out_dir": ...}`` (cells as (model, dataset, language))."""
    out_dir = pathlib.Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not len(config.models):
        raise ValueError("config.models is empty")
    records = load_records(config.data, config.data.split)
    if not records:
        raise ValueError(f"no {config.data.split} records for datasets={tuple(config.data.datasets)} "
                         f"languages={tuple(config.data.languages)} in data.source={config.data.source!r}")
    cells = group_cells(records, config.data.max_per_cell)
    shots_pool = load_records(config.data, config.data.shots_split) if config.num_shots else []
    shots_by_dataset: dict[str, list[Record]] = defaultdict(list)
    for r in shots_pool:
        shots_by_dataset[r.dataset].append(r)

    done_rows = {(r["model"], r["dataset"], r["language"]): r for r in read_results(out_dir)}
    pending: dict[str, list[tuple[str, str]]] = {}
    skipped = []
    for name, spec in config.models.items():
        setting = setting_of(config, spec)
        todo = []
        for key in cells:
            row = done_rows.get((name, *key))
            if row is None:
                todo.append(key)
                continue
            if row.get("setting") != setting:
                raise SettingMismatchError(
                    f"{out_dir / RESULTS_NAME} has {name}/{key[0]}/{key[1]} under setting {row.get('setting')}, "
                    f"but this run uses {setting}; use another out_dir (or delete those rows)")
            skipped.append((name, *key))
        pending[name] = todo
    # Fail before any work when a local model that has work to do is missing.
    for name, spec in config.models.items():
        if pending[name] and not is_api(spec):
            check_local_path(name, spec)

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
        model = APIModel(name, spec, config, out_dir) if is_api(spec) else LocalModel(name, spec, config)
        loaded.append(name)
        setting = setting_of(config, spec)
        for dataset, language in pending[name]:
            recs = cells[(dataset, language)]
            if bar is not None:
                bar.set_description(f"{name} {dataset} {language}")
            pool = [r for r in shots_by_dataset.get(dataset, ()) if r.language == language] \
                or shots_by_dataset.get(dataset, [])
            t0 = time.perf_counter()
            preds = model.predict(recs, pool)
            scores = None
            if judge is not None and not get_family(recs[0].family).closed:
                from globmed_jax.evaluation.judge import judge_answers

                scores = judge_answers(judge, recs, [p.predicted for p in preds])
            row = cell_row(name, recs, preds, seconds=time.perf_counter() - t0, setting=setting,
                           seed=config.seed, resamples=config.bootstrap_resamples, judge_scores=scores)
            _append(out_dir / PREDICTIONS_DIR / f"{name}.jsonl", prediction_rows(name, recs, preds))
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
