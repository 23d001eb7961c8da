"""Rows of the intervention tables and the documents in VISTA's ``intervention_<mode>`` schema."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from vista.interventions.scoring import READERS, effect

if TYPE_CHECKING:
    from vista.interventions.edits import Edits, Outcome


def effect_rows(
    edits: Edits, target: str, condition: str, outcome: Outcome, cos: np.ndarray, **setting: Any
) -> list[dict[str, Any]]:
    """One row per attribute and reader: accuracy before/after, the paired effect, the cosine."""
    rows = []
    for a, per in outcome.items():
        for r in READERS:
            base = edits.base(a, r)
            e = effect(per[r] - base, edits.ctx, target, condition, str(setting), a, r)
            rows.append(
                {
                    "condition": condition,
                    **setting,
                    "attribute": a,
                    "role": "target" if a == target else "non_target",
                    "reader": r,
                    "acc_before": float(base.mean()),
                    "acc_after": float(per[r].mean()),
                    **e.row(),
                    "cosine": float(cos.mean()),
                }
            )
    return rows


def legacy(rows: list[dict[str, Any]], reader: str = "fresh") -> dict[str, Any]:
    """VISTA's section for one setting: cosine, ``target`` / ``non_target`` accuracies, plus
    the interval and p-value of each delta (VISTA retrained fresh probes: the default reader)."""
    doc: dict[str, Any] = {"cosine": rows[0]["cosine"] if rows else float("nan")}
    doc["target"], doc["non_target"] = {}, {}
    for row in rows:
        if row["reader"] != reader:
            continue
        doc[row["role"]][row["attribute"]] = {
            k: row[k] for k in ("acc_before", "acc_after", "delta", "ci", "p_value", "n")
        }
    return doc


def decomposition_rows(
    parts: dict[str, dict[str, dict[str, Any]]], target: str, k: int
) -> list[dict[str, Any]]:
    """Per component and reader: the effect on the target attribute and the mean on the others."""
    rows = []
    for component, per_attr in parts.items():
        for r in READERS:
            t = per_attr[target][r]
            others = [per_attr[a][r].value for a in per_attr if a != target]
            rows.append(
                {
                    "k": k,
                    "component": component,
                    "reader": r,
                    "target_delta": t.value,
                    "ci": [t.low, t.high],
                    "p_value": t.p,
                    "n": t.n,
                    "non_target_delta": float(np.mean(others)) if others else float("nan"),
                }
            )
    return rows
