"""``--baseline auto``: keep the baseline whose gradient signal reproduces better across halves of the transitions.

The two baselines (theta_star's value head, each task's own value function) give different advantages for the same
transitions; the projected gradients are the same. The feature stage under ``auto`` stores both (per_task's as the
surrogate's labels and weights, the value head's as ``value_head_*``, and per_task's split advantages whose
baselines are fitted apart on each half). This module then measures, for each, the split-half reliability of the
gradient interaction G G^T (:func:`.confidence.interaction_reliability`, the number the report prints), and keeps
the one that is higher: per_task where its reliability is above the value head's, the value head otherwise (also
where either cannot be measured). Keeping the value head rewrites each file's labels, weights and advantages with
its own (per_task's move to ``per_task_*``), so every later stage reads the kept baseline's; the choice and both
reliabilities go into features/meta.json under ``baseline``.

Why by this statistic: per_task's is measured with each half's baseline fitted on that half alone, so it estimates
how well the gradient interaction reproduces on a fresh collection (results/baseline-reliability.md), as the value
head's does; results/baseline-choice.md applies the rule to the planted suite's pairs of runs.

Time and memory: one streamed pass over the feature files for the two reliabilities (O(N d) per task, O(n d)
kept), and, when the value head is kept, one rewrite of every file (as batch normalisation does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from policygradex.common.artifacts import atomic_save_npz, load_npz, npz_holds
from policygradex.common.errors import PolicyGradExError
from policygradex.pipeline.confidence import gradient_halves, interaction_reliability
from policygradex.pipeline.features import fit_rows

CANDIDATES = {"policy": ("value_head_labels", "value_head_weights"), "per_task": ("split_labels", "split_weights")}
"""Each candidate baseline and the labels and weights of a feature file its split-half reliability is measured on."""


def effective_baseline(baseline: str, feature_meta: dict[str, Any]) -> str:
    """The baseline behind a run's features: ``baseline`` itself, or for ``auto`` the one kept (features/meta.json);
    ``auto`` while none has been kept yet."""
    if baseline != "auto":
        return baseline
    chosen = feature_meta.get("baseline", {})
    return str(chosen.get("chosen", "auto")) if isinstance(chosen, dict) else "auto"


def candidate_reliabilities(paths: list[Path], holdout_fraction: float) -> dict[str, float | None]:
    """Each candidate's split-half reliability of G G^T from the fitting rows of the feature files, streamed task by
    task (None below 3 tasks or where it is not measurable)."""
    halves: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {name: ([], []) for name in CANDIDATES}
    for p in paths:
        a = load_npz(p, ("features", *(k for keys in CANDIDATES.values() for k in keys)))
        if not all(k in a for keys in CANDIDATES.values() for k in keys):
            raise PolicyGradExError(f"{p} lacks the two baselines' labels of --baseline auto; delete it to recompute")
        m = fit_rows(a["features"].shape[0], holdout_fraction)
        for name, (labels, weights) in CANDIDATES.items():
            h = gradient_halves(a["features"][None, :m], a[labels][None, :m], a[weights][None, :m])
            if h is None:
                return {name: None for name in CANDIDATES}
            halves[name][0].append(h[0][0])
            halves[name][1].append(h[1][0])
    if len(paths) < 3:
        return {name: None for name in CANDIDATES}
    return {name: interaction_reliability(np.stack(first), np.stack(second))
            for name, (first, second) in halves.items()}


def choose(reliability: dict[str, float | None]) -> str:
    """per_task where its reliability is above the value head's; the value head otherwise."""
    policy, per_task = reliability.get("policy"), reliability.get("per_task")
    return "per_task" if policy is not None and per_task is not None and per_task > policy else "policy"


def keep_value_head(paths: list[Path]) -> None:
    """Rewrite every feature file so that its labels, weights and advantages are the value head's (per_task's kept
    as ``per_task_*``). Idempotent: a file already rewritten is left as it is, so an interrupted rewrite resumes."""
    for p in paths:
        if npz_holds(p, "per_task_labels"):  # the zip's listing only: a resumed run reads no array
            continue
        a = load_npz(p)
        a.update(per_task_advantages=a["advantages"], per_task_labels=a["labels"], per_task_weights=a["weights"],
                 advantages=a["value_head_advantages"], labels=a["value_head_labels"],
                 weights=a["value_head_weights"])
        atomic_save_npz(p, **a)


def choose_baseline(paths: list[Path], holdout_fraction: float, feature_meta: dict[str, Any]) -> dict[str, Any]:
    """The ``baseline`` record of features/meta.json for feature files of ``--baseline auto``: the one kept already
    (a resumed run), else measured, chosen and applied to the files."""
    prior = feature_meta.get("baseline")
    if isinstance(prior, dict) and prior.get("N") == feature_meta.get("N") and prior.get("chosen") in CANDIDATES:
        if prior["chosen"] == "policy":
            keep_value_head(paths)  # finishes a rewrite an interruption cut short
        return prior
    reliability = candidate_reliabilities(paths, holdout_fraction)
    chosen = choose(reliability)
    if chosen == "policy":
        keep_value_head(paths)
    return {"chosen": chosen, "reliability": reliability, "N": feature_meta.get("N")}


def baseline_line(record: dict[str, Any]) -> str:
    """One sentence on the baseline ``--baseline auto`` kept and why."""
    rel = record.get("reliability", {})

    def shown(name: str) -> str:
        r = rel.get(name)
        return "not measurable" if r is None else f"{r:.2f}"

    other = "policy" if record["chosen"] == "per_task" else "per_task"
    return (f"--baseline auto kept {record['chosen']}: gradient signal reliability {shown(record['chosen'])}, "
            f"against {shown(other)} with {other}")
