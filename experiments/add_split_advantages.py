r"""Give ``--baseline per_task`` runs made before the split advantages were stored their split halves.

Since the feature stage stores, for the per-task baseline, the advantages of baselines fitted apart on each half of
the fitting rows (``policygradex.pipeline.features.split_advantages``), the gradient signal's split-half reliability
is computed from them. Feature files written before lack them and fall back to the joint fit's halves, an upper
bound (results/baseline-reliability.md). Recomputing such a run from scratch repeats its surrogate, which the split
does not change. This script instead, for each run directory:

1. re-collects each block of tasks' transitions from the block's own seed (the rollout and its advantages only: no
   gradient is projected), exactly as the feature stage's job does (``feature_blocks.feature_block_job``);
2. on one thread, as ``policygradex run`` by default (its ``--threads``: the per-task fits' last bits depend on
   the thread count), checks that every task's advantages are byte for byte those its feature file holds, so the
   transitions are the file's own (it stops at the first that differs, changing nothing in that run);
3. adds ``split_advantages``, ``split_labels`` and ``split_weights`` to each file, normalised as the job does
   (files that already hold the same bytes are left alone);
4. removes groups.json, so that rerunning the same ``policygradex run`` command loads the features, surrogate and
   affinity unchanged and recomputes the cluster stage: the same groups, with the honest confidence.

    python experiments/add_split_advantages.py runs/suite-pt/*/

Feature files only (``--store features``), one block of tasks or several, not ``batch`` normalisation over several
blocks. O(n N) memory (the split advantages; one block's transitions at a time); time: the feature stage's
rollouts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from policygradex.analysis.context import load_context
from policygradex.common.artifacts import atomic_save_npz, load_json, load_npz
from policygradex.common.threads import thread_limit
from policygradex.pipeline.feature_blocks import SPLIT_KEYS, block_normalization
from policygradex.pipeline.features import block_transitions, logistic_targets, normalized_split, task_blocks
from policygradex.pipeline.gradient_statistics import resolve_store


def add_split(run: Path) -> str:
    """Add the split advantages to one run's feature files; returns what it did, in words."""
    ctx = load_context(run)
    cfg, family, rd = ctx.cfg, ctx.family, ctx.rd
    if cfg.features.baseline != "per_task":
        return "not a --baseline per_task run: nothing to add"
    if resolve_store(cfg, family.n) != "features":
        return "stores statistics, not feature files: rerun it into a fresh directory"
    mode = block_normalization(cfg, family.n)
    if mode != cfg.features.advantage_normalization:
        return "batch normalisation over several blocks: rerun it into a fresh directory"
    paths = [rd.task_features(i) for i in range(family.n)]
    if load_json(rd.features_meta).get("N", cfg.features.transitions_per_task) != cfg.features.transitions_per_task:
        return "its features were grown by --target-reliability: rerun it into a fresh directory"
    split_of: dict[int, dict[str, np.ndarray]] = {}
    with thread_limit(1):  # the feature stage's threads (`policygradex run --threads`, 1 by default)
        for b, ids in enumerate(task_blocks(family.n, cfg.features.task_block)):
            transitions = block_transitions(cfg, family, ctx.model, b)
            for i, tr, adv in zip(ids, transitions, normalized_split(transitions, mode)):
                held = load_npz(paths[i], ("advantages", *SPLIT_KEYS))
                if not np.array_equal(held["advantages"], tr.advantages.astype(np.float32)):
                    return f"task {i}'s advantages differ from its feature file's: left unchanged"
                labels, weights = logistic_targets(adv)
                split_of[i] = {"split_advantages": tr.split_advantages.astype(np.float32), "split_labels": labels,
                               "split_weights": weights}
                if all(k in held and np.array_equal(held[k], split_of[i][k]) for k in SPLIT_KEYS):
                    del split_of[i]  # already there, the same bytes
    if not split_of:
        return "already has its split advantages"
    for i, split in split_of.items():  # every task checked: now write
        atomic_save_npz(paths[i], **{**load_npz(paths[i]), **split})
    rd.groups.unlink(missing_ok=True)
    return f"split advantages added to {len(split_of)} feature files; groups.json removed"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path, nargs="+")
    for run in ap.parse_args().runs:
        print(f"{run}: {add_split(run)}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
