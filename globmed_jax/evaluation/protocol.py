"""The bench-protocol settings a cell's results depend on, as fingerprint fields.

``fingerprint_fields(cell)`` merges every group of ``FIELD_GROUPS``; a group is a function
``(CellSettings) -> {field: value}`` owning the fields of one protocol setting. The runner adds
them to the model, data and prompt fields of ``runner.cell_fingerprint_fields``, so changing any
of these settings makes a resumed run recompute the cell (or refuse, naming the field).

To add a setting (an option-permutation pass, a reasoning budget, ...): write its group here
and append it to ``FIELD_GROUPS``. Two groups may not emit the same field (ValueError), so one
cannot silently overwrite another's value.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

from globmed_jax.data.families import get_family
from globmed_jax.data.schema import Record
from globmed_jax.evaluation import fingerprint, formulations, position_bias, prompting, reasoning


@dataclasses.dataclass(frozen=True)
class CellSettings:
    """What a group may read: the run config, the model's spec, its effective scoring mode
    ("loglik" | "generate" | "reasoning"), the cell's records and its few-shot pool."""

    config: Any
    spec: Any
    mode: str
    records: Sequence[Record]
    shots: Sequence[Record]

    @property
    def closed(self) -> bool:
        return all(get_family(r.family).closed for r in self.records)


def formulation_fields(cell: CellSettings) -> dict[str, Any]:
    """Closed-form cells: the formulations scored (primary first) and acc_norm's normalisation."""
    if not cell.closed:
        return {}
    names = formulations.scored(cell.config, cell.spec)
    norm = formulations.NORMALIZATION if cell.mode == "loglik" and formulations.NORMALIZED in names else ""
    return {"scoring.formulations": list(names), "scoring.normalization": norm}


def shot_fields(cell: CellSettings) -> dict[str, Any]:
    """k; and with k > 0 the shots' split, seed, selection rule and the pool's records hash."""
    data, k = cell.config.data, int(cell.config.num_shots)
    fields: dict[str, Any] = {"prompt.num_shots": k}
    if k:
        fields.update({"data.shots_split": data.shots_split, "data.shots_seed": int(data.shots_seed),
                       "data.shots_selection": prompting.SHOT_SELECTION,
                       "data.shots": fingerprint.records_digest(cell.shots)})
    return fields


def permutation_fields(cell: CellSettings) -> dict[str, Any]:
    """The option-permutation pass (``bench.permutations``) for cells with multiple-choice items."""
    return position_bias.fingerprint_fields(cell.config, cell.records)


def reasoning_fields(cell: CellSettings) -> dict[str, Any]:
    """The reasoning budget (``reasoning.budget``) of reasoning-mode cells."""
    return reasoning.fingerprint_fields(cell.config, cell.mode)


FIELD_GROUPS: tuple[Callable[[CellSettings], Mapping[str, Any]], ...] = (
    formulation_fields, shot_fields, permutation_fields, reasoning_fields)


def fingerprint_fields(cell: CellSettings) -> dict[str, Any]:
    """Every group's fields; ValueError when two groups emit the same field."""
    out: dict[str, Any] = {}
    for group in FIELD_GROUPS:
        fields = group(cell)
        clash = sorted(set(fields) & set(out))
        if clash:
            raise ValueError(f"protocol field(s) {clash} emitted by {group.__name__} and an earlier group")
        out.update(fields)
    return out
