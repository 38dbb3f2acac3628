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

Under ``--store statistics`` the blocks' statistics files hold both baselines' statistics (the value head's as
``value_head_*``, :func:`.gradient_statistics.task_statistics`); per_task's halves are its ``split_sums``, the
value head's the first and second half of its block sums, as :func:`.confidence.gradient_halves_from_blocks`
reads them for a run of that baseline. Keeping the value head swaps its statistics into the surrogate's keys (and
per_task's split sums out), so every later stage reads them as a value-head run's.

Time and memory: one streamed pass over the feature files for the two reliabilities (O(N d) per task, O(n d)
kept), and, when the value head is kept, one rewrite of every file (as batch normalisation does). Statistics
files: O(n d) read and kept, and a rewrite of the blocks' small files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from policygradex.common.artifacts import atomic_save_npz, load_npz, npz_holds
from policygradex.common.errors import PolicyGradExError
from policygradex.pipeline.confidence import block_halves, interaction_reliability, task_fitting_halves

CANDIDATES = {"policy": ("value_head_labels", "value_head_weights"), "per_task": ("split_labels", "split_weights")}
"""Each candidate baseline and the labels and weights of a feature file its split-half reliability is measured on."""
SWAPPED = {"features": ("advantages", "labels", "weights"),
           "statistics": ("c", "b", "block_sums", "curvature_sum", "held_c", "held_b", "held_curvature_sum")}
"""What keeping the value head swaps in a file of each store: ``key`` <- ``value_head_key``, per_task's kept as
``per_task_key`` (a statistics file's per-task ``split_sums`` move to ``per_task_split_sums``)."""


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
        for name, (labels, weights) in CANDIDATES.items():
            h = task_fitting_halves(a["features"], a[labels], a[weights], holdout_fraction)
            if h is None:
                return {name: None for name in CANDIDATES}
            halves[name][0].append(h[0])
            halves[name][1].append(h[1])
    if len(paths) < 3:
        return {name: None for name in CANDIDATES}
    return {name: interaction_reliability(np.stack(first), np.stack(second))
            for name, (first, second) in halves.items()}


def candidate_reliabilities_of_statistics(paths: list[Path]) -> dict[str, float | None]:
    """Each candidate's split-half reliability of G G^T from the blocks' statistics files of ``--store
    statistics`` (per_task: its split sums; the value head: the halves of its block sums)."""
    halves: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {name: ([], []) for name in CANDIDATES}
    for p in paths:
        a = load_npz(p, ("split_sums", "value_head_block_sums"))
        if len(a) < 2:
            raise PolicyGradExError(f"{p} lacks the two baselines' statistics of --baseline auto; delete it to "
                                    "recompute")
        value_head = block_halves(a["value_head_block_sums"])
        if value_head is None:
            return {name: None for name in CANDIDATES}
        for name, (first, second) in (("per_task", (a["split_sums"][:, 0], a["split_sums"][:, 1])),
                                      ("policy", value_head)):
            halves[name][0].append(first)
            halves[name][1].append(second)
    if sum(len(f) for f in halves["policy"][0]) < 3:
        return {name: None for name in CANDIDATES}
    return {name: interaction_reliability(np.concatenate(first), np.concatenate(second))
            for name, (first, second) in halves.items()}


def choose(reliability: dict[str, float | None]) -> str:
    """per_task where its reliability is above the value head's; the value head otherwise."""
    policy, per_task = reliability.get("policy"), reliability.get("per_task")
    return "per_task" if policy is not None and per_task is not None and per_task > policy else "policy"


def keep_value_head(paths: list[Path], store: str = "features") -> None:
    """Rewrite every file of ``store`` (feature files, or the blocks' statistics files) so that what the surrogate
    reads is the value head's (:data:`SWAPPED`; per_task's kept as ``per_task_*``). Idempotent: a file already
    rewritten is left as it is, so an interrupted rewrite resumes."""
    keys = SWAPPED[store]
    for p in paths:
        if npz_holds(p, f"per_task_{keys[0]}"):  # the zip's listing only: a resumed run reads no array
            continue
        a = load_npz(p)
        for key in keys:
            if key in a:
                a[f"per_task_{key}"], a[key] = a[key], a[f"value_head_{key}"]
        if store == "statistics" and "split_sums" in a:
            a["per_task_split_sums"] = a.pop("split_sums")
        atomic_save_npz(p, **a)


def choose_baseline(paths: list[Path], holdout_fraction: float, feature_meta: dict[str, Any],
                    store: str = "features") -> dict[str, Any]:
    """The ``baseline`` record of features/meta.json for the files of ``--baseline auto`` (feature files, or with
    ``store`` statistics the blocks' statistics files): the one kept already (a resumed run), else measured, chosen
    and applied to the files."""
    prior = feature_meta.get("baseline")
    if isinstance(prior, dict) and prior.get("N") == feature_meta.get("N") and prior.get("chosen") in CANDIDATES:
        if prior["chosen"] == "policy":
            keep_value_head(paths, store)  # finishes a rewrite an interruption cut short
        return prior
    reliability = (candidate_reliabilities_of_statistics(paths) if store == "statistics"
                   else candidate_reliabilities(paths, holdout_fraction))
    chosen = choose(reliability)
    if chosen == "policy":
        keep_value_head(paths, store)
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
