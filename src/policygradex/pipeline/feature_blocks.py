"""The feature stage in blocks of tasks, as jobs of the job launcher (:mod:`policygradex.common.launcher`).

Block b holds tasks ``task_blocks(n, task_block)[b]``. Its job loads theta_star from the run directory, collects
the block's transitions from the block's own seed (``RunConfig.feature_block_seed``), computes every task's
projected gradients and writes its feature file; it returns the tasks' mean episode returns. A job depends only on
its arguments (the run's configuration, the block, theta_star's sha256) and runs on ``threads`` torch threads, so
the files are the same whichever backend ran it: one by one in the run's process (the default), a local process
pool, or a Ray cluster whose workers see the run directory.

Advantages. ``per_task`` and ``none`` normalisation need nothing outside the task. ``batch`` standardises over all
tasks: with one block the job does it as before; with several, each job writes labels and weights of its raw
advantages and :func:`renormalise_batch` rewrites them from the mean and standard deviation over all tasks.

Stored output. With ``--store features`` the job writes every task's feature file; with ``--store statistics``
(:mod:`.gradient_statistics`) one statistics file for the block, and no per-transition array is formed.

Time: with feature files, the blocks' work adds up to the one-block stage's (rollouts O(n N) steps, gradients O(n N p), projection
O(n N p d)); memory holds one block's transitions and features at a time, O(task_block N (obs + d)).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from policygradex.common.artifacts import atomic_save_npz, load_npz, load_torch
from policygradex.common.errors import PolicyGradExError
from policygradex.common.launcher import JobSpec
from policygradex.envs.registry import load_family
from policygradex.pipeline.config import RunConfig
from policygradex.pipeline.features import (
    block_transitions,
    feature_arrays,
    fit_rows,
    logistic_targets,
    normalize_advantages,
    normalized_split,
    projection_for,
    task_blocks,
)
from policygradex.pipeline.gradient_statistics import BlockStatistics, auto_curvature_rows, resolve_store, task_statistics
from policygradex.pipeline.rundir import RunDir
from policygradex.rl.ppo import network_for

JOB_FN = "policygradex.pipeline.feature_blocks:feature_block_job"


def block_normalization(cfg: RunConfig, n: int) -> str:
    """The advantage normalisation a block's job applies: the run's, except ``batch`` over several blocks (raw,
    renormalised afterwards by :func:`renormalise_batch`)."""
    mode = cfg.features.advantage_normalization
    several = len(task_blocks(n, cfg.features.task_block)) > 1
    return "none" if mode == "batch" and several else mode


def block_specs(cfg: RunConfig, n: int, blocks: list[int], run_dir: Path, theta_sha: str) -> list[JobSpec]:
    """One job per block in ``blocks``; ``theta_sha`` pins the theta_star the files are made from."""
    return [JobSpec(JOB_FN, {"config": cfg.to_dict(), "block": b, "theta_star_sha256": theta_sha,
                             "normalization": block_normalization(cfg, n), "store": resolve_store(cfg, n)},
                    seed=cfg.feature_block_seed(b), label=f"tasks {task_blocks(n, cfg.features.task_block)[b].start}+",
                    paths={"run_dir": str(run_dir)})
            for b in blocks]


def feature_block_job(args: dict[str, Any], seed: int,
                      on_task: Callable[[], None] | None = None) -> dict[str, Any]:
    """Collect, project and write the features of one block of tasks (see the module docstring); ``on_task`` is
    called after each task's file (progress, when the job runs in the run's own process)."""
    cfg = RunConfig.from_dict(args["config"])
    rd = RunDir(Path(args["run_dir"]))
    family = load_family(cfg.family)
    model = network_for(family, cfg.network)
    try:
        model.load_state_dict(load_torch(rd.theta_star)["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise PolicyGradExError(f"{rd.theta_star} does not match this configuration ({exc})") from None
    block = int(args["block"])
    ids = task_blocks(family.n, cfg.features.task_block)[block]
    t0 = time.perf_counter()
    transitions = block_transitions(cfg, family, model, block)
    rollout_seconds = time.perf_counter() - t0
    advantages = normalize_advantages([t.advantages for t in transitions], args["normalization"])
    split = normalized_split(transitions, args["normalization"])
    value_head = normalized_split(transitions, args["normalization"], "value_head_advantages")
    projection = projection_for(cfg, model)
    returns: dict[str, float | None] = {}
    statistics = args.get("store", "features") == "statistics"
    block_stats = BlockStatistics()
    if statistics:
        sc = cfg.surrogate
        rows = auto_curvature_rows(family.n, fit_rows(cfg.features.transitions_per_task, cfg.features.holdout_fraction),
                                   sc.curvature_rows)
    for i, tr, adv, adv_split, adv_head in zip(ids, transitions, advantages, split, value_head):
        mean_return = float(np.mean(tr.episode_returns)) if tr.episode_returns else None
        if statistics:
            block_stats.add(i, task_statistics(model, tr.obs, tr.actions, adv, projection, cfg.features, sc.blocks,
                                               rows, adv_split, adv_head), mean_return)
        else:
            arrays = feature_arrays(model, tr.obs, tr.actions, adv, projection, cfg.features, adv_split)
            if tr.split_advantages is not None:
                arrays["split_advantages"] = tr.split_advantages.astype(np.float32)
            if tr.value_head_advantages is not None and adv_head is not None:
                labels, weights = logistic_targets(adv_head)
                arrays.update(value_head_advantages=tr.value_head_advantages.astype(np.float32),
                              value_head_labels=labels, value_head_weights=weights)
            atomic_save_npz(rd.task_features(i), **arrays, advantages=tr.advantages.astype(np.float32),
                            episode_returns=np.asarray(tr.episode_returns, dtype=np.float32))
        returns[family.tasks[i].name] = mean_return
        if on_task is not None:
            on_task()
    if statistics:
        block_stats.save(rd.block_statistics(block))
    return {"block": block, "mean_episode_return": returns, "rollout_seconds": rollout_seconds}


def returns_of_files(paths: list[Path], names: list[str]) -> dict[str, float | None]:
    """The tasks' mean episode returns as their feature files recorded them."""
    out: dict[str, float | None] = {}
    for p, name in zip(paths, names):
        rets = load_npz(p, ("episode_returns",)).get("episode_returns")
        out[name] = float(np.mean(rets)) if rets is not None and len(rets) else None
    return out


SPLIT_KEYS = ("split_advantages", "split_labels", "split_weights")
"""A feature file's per-task-baseline split (:attr:`.features.TaskTransitions.split_advantages`), when it has one."""
VALUE_HEAD_KEYS = ("value_head_advantages", "value_head_labels", "value_head_weights")
"""``--baseline auto``: the value head's advantages (:attr:`.features.TaskTransitions.value_head_advantages`)."""


def renormalise_batch(paths: list[Path]) -> None:
    """``batch`` normalisation over several blocks: labels and weights of every feature file recomputed from its raw
    advantages standardised by the mean and standard deviation over all tasks, and likewise the split and the value
    head's labels and weights from their own advantages where the files have them (two streamed passes: the first
    reads only the advantages, the second rewrites each file whole)."""
    moments: dict[str, list[float]] = {}
    for p in paths:
        arrays = load_npz(p, ("advantages", SPLIT_KEYS[0], VALUE_HEAD_KEYS[0]))
        for raw, a in arrays.items():
            m = moments.setdefault(raw, [0, 0.0, 0.0, 0])
            a = a.astype(np.float64)
            m[0], m[1], m[2], m[3] = m[0] + a.size, m[1] + a.sum(), m[2] + (a * a).sum(), m[3] + 1
    keys = [("advantages", "labels", "weights")] + [k for k in (SPLIT_KEYS, VALUE_HEAD_KEYS)
                                                     if moments.get(k[0], [0, 0, 0, 0])[3] == len(paths)]
    for p in paths:
        arrays = dict(load_npz(p))
        for raw, label_key, weight_key in keys:
            count, total, total_sq, _ = moments[raw]
            mu = total / count
            sd = float(np.sqrt(max(total_sq / count - mu * mu, 0.0))) + 1e-8
            arrays[label_key], arrays[weight_key] = logistic_targets((arrays[raw].astype(np.float64) - mu) / sd)
        atomic_save_npz(p, **arrays)
