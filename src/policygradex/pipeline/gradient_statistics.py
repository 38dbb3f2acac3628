"""The closed form's statistics straight from the gradients (``--store statistics``): no per-transition features.

The closed-form surrogate (:mod:`.statistics`) reads of each task only

    c_k = log 2 mean(w),   b_k = mean(1/2 w y g~)   (and its R block sums),   H = mean_k mean(1/4 w g~ g~^T),

for the fitting rows and for the held-out ones. g~ = P^T g is linear in the gradient g = grad log pi(a|s) at
theta_star, so every block sum is the projection of one gradient,

    sum_{t in block} 1/2 w_t y_t g~_t = P^T grad_theta sum_{t in block} 1/2 w_t y_t log pi(a_t | s_t),

a forward and backward over the block's rows: no per-sample gradient. Only the shared curvature needs them, and
it is a mean over all n tasks, so each task contributes a subsample of ``curvature_rows`` rows (evenly spaced in
time, :func:`.statistics.curvature_rows_index`); :func:`auto_curvature_rows` spreads a fixed total over the tasks.
What this drops against ``--store features`` with the same options: nothing in b, c or the block sums (equal up to
float rounding: the sums are taken over gradients before the projection rather than after); the curvature is the
subsample's, results/statistics-store.md measures what that changes.

The feature stage's job of each block of tasks (:mod:`.feature_blocks`) writes one statistics file for the block
(:class:`BlockStatistics`): per task c, b, block sums, the held-out c and b, its mean episode return, and the sum
over the block's tasks of the curvature on the subsampled rows. :func:`merge_block_statistics` adds the blocks in
order into one :class:`.statistics.Statistics`, so the statistics are sharded exactly like the features, on every
backend (sequential, process pool, Ray), with the same bytes.

Time per task: O(N p) for the block sums (one forward and backward over its N rows) plus O(R p d) to project them,
and O(r p d) for the r curvature rows' per-sample gradients and projection, against O(N p d) for the features.
Memory and disk per block of T tasks: O(T R d + d^2), against O(T N d) for feature files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from policygradex.common.artifacts import atomic_save_npz, load_npz
from policygradex.common.errors import PolicyGradExError
from policygradex.pipeline.config import FeatureConfig, RunConfig
from policygradex.pipeline.features import Projection, fit_rows, logistic_targets, task_blocks
from policygradex.pipeline.gradients import projected_gradients
from policygradex.pipeline.statistics import LOG2, Statistics, block_bounds, curvature_rows_index
from policygradex.pipeline.surrogate import resolve_surrogate

CURVATURE_TOTAL_ROWS = 32_768
"""``--store statistics`` with ``curvature_rows`` None: the shared curvature averages over about this many rows in
all, split evenly over the tasks (:func:`auto_curvature_rows`). Chosen on the tuning seeds of
results/statistics-store.md: the smallest total of the sweep whose U correlates 0.9999 with the full curvature's
on planted(n=100); it costs one per-sample gradient per row, a few seconds with the dense P at d = 400."""
CURVATURE_MIN_ROWS = 32
"""... but never fewer than this many rows of a task (every task is represented in the curvature)."""


def resolve_store(cfg: RunConfig, n: int) -> str:
    """What the feature stage writes for a run of n tasks: ``features`` (per-transition features, every surrogate)
    or ``statistics`` (:mod:`this module`, the closed form with a shared curvature only). ``auto`` picks
    ``statistics`` wherever it is allowed: the surrogate resolves to ``closed_form`` with the shared curvature, and
    advantages are not normalised over a batch of several blocks of tasks."""
    store = cfg.features.store
    if store != "auto":
        return store
    return "statistics" if statistics_refusal(cfg, n) is None else "features"


def statistics_refusal(cfg: RunConfig, n: int) -> str | None:
    """Why ``--store statistics`` cannot serve this run (None when it can)."""
    if resolve_surrogate(cfg.surrogate.method, n) != "closed_form":
        return (f"--store statistics needs the closed-form surrogate (this run's is "
                f"{resolve_surrogate(cfg.surrogate.method, n)}): use --surrogate closed_form or --store features")
    if cfg.surrogate.curvature != "shared":
        return "--store statistics keeps only the shared curvature: use --curvature shared or --store features"
    if cfg.features.advantage_normalization == "batch" and len(task_blocks(n, cfg.features.task_block)) > 1:
        return ("--store statistics cannot normalise advantages over a batch of several blocks of tasks: use "
                "--advantage-normalization per_task, a --task-block of at least n, or --store features")
    return None


def auto_curvature_rows(n: int, n_fit: int, want: int | None) -> int:
    """Curvature rows per task under ``--store statistics``: ``want``, or CURVATURE_TOTAL_ROWS / n (at least
    CURVATURE_MIN_ROWS), at most the task's fitting rows."""
    if want is None:
        want = max(CURVATURE_MIN_ROWS, math.ceil(CURVATURE_TOTAL_ROWS / n))
    return max(1, min(n_fit, want))


def weighted_gradient_sums(model: nn.Module, obs: torch.Tensor, actions: torch.Tensor, z: torch.Tensor,
                           bounds: np.ndarray, projection: Projection) -> np.ndarray:
    """(R, d) float64: P^T grad sum_{t in block r} z_t log pi(a_t | s_t) for the R blocks of rows ``bounds``, one
    forward and backward per block (the gradients are summed in float32, projected in float64)."""
    names = model.policy_parameter_names()
    params = dict(model.named_parameters())
    wrt = [params[k] for k in names]
    rows = []
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        logp = model(obs[lo:hi], actions[lo:hi])
        grads = torch.autograd.grad((z[lo:hi] * logp).sum(), wrt)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return projection.project(torch.stack(rows).to(torch.float64)).numpy()


def _weighted_outer(X: torch.Tensor, w: np.ndarray) -> np.ndarray:
    """(d, d) mean over the rows of X (per-sample projected gradients, float64) of 1/4 w g~ g~^T."""
    ws = torch.from_numpy(w.astype(np.float64))
    return ((X * (0.25 * ws)[:, None]).T @ X).numpy() / X.shape[0]


def _weighted_statistics(model: nn.Module, obs: torch.Tensor, actions: torch.Tensor, advantages: np.ndarray,
                         projection: Projection, bounds: np.ndarray, idx: np.ndarray, X: torch.Tensor,
                         hidx: np.ndarray | None, Xh: torch.Tensor | None) -> dict[str, Any]:
    """The statistics of one set of advantages of a task's transitions: c, b and the block sums of the fitting
    rows (the first ``bounds[-1]``), the curvature on the per-sample gradients X of rows ``idx``, and the held-out
    c, b and curvature (Xh of the held-out rows ``hidx``) when there are held-out rows."""
    n_fit = int(bounds[-1])
    y, w = logistic_targets(advantages)
    z = torch.from_numpy(0.5 * w * y)
    sums = weighted_gradient_sums(model, obs[:n_fit], actions[:n_fit], z[:n_fit], bounds, projection)
    out: dict[str, Any] = {"c": LOG2 * float(w[:n_fit].astype(np.float64).mean()), "block_sums": sums,
                           "b": sums.sum(0) / n_fit, "curvature": _weighted_outer(X, w[idx])}
    held = len(advantages) - n_fit
    if held:
        assert hidx is not None and Xh is not None
        hs = weighted_gradient_sums(model, obs[n_fit:], actions[n_fit:], z[n_fit:], np.array([0, held]), projection)
        out.update(held_c=LOG2 * float(w[n_fit:].astype(np.float64).mean()), held_b=hs[0] / held,
                   held_curvature=_weighted_outer(Xh, w[n_fit:][hidx]))
    return out


def task_statistics(model: nn.Module, obs: torch.Tensor, actions: torch.Tensor, advantages: np.ndarray,
                    projection: Projection, fc: FeatureConfig, blocks: int, curvature_rows: int,
                    split_advantages: np.ndarray | None = None,
                    value_head_advantages: np.ndarray | None = None) -> dict[str, Any]:
    """One task's statistics (fitting and held-out rows) from its transitions and (normalised) advantages; with the
    (normalised) ``split_advantages`` of the per-task baseline also ``split_sums``, (2, d): the sums of
    1/2 w y g~ of those advantages over the first half of the fitting rows and over the rest (one more backward).
    ``--baseline auto``: with the (normalised) ``value_head_advantages`` also ``value_head``, the same statistics of
    those advantages (the per-sample gradients of the curvature rows are shared; two more backwards)."""
    N = len(advantages)
    n_fit = fit_rows(N, fc.holdout_fraction)
    bounds = block_bounds(n_fit, blocks)
    idx = curvature_rows_index(n_fit, curvature_rows)
    X = projected_gradients(model, obs[idx], actions[idx], projection, fc).to(torch.float64)
    held = N - n_fit
    hidx = Xh = None
    if held:
        hidx = curvature_rows_index(held, math.ceil(curvature_rows * held / n_fit))
        Xh = projected_gradients(model, obs[n_fit:][hidx], actions[n_fit:][hidx], projection, fc).to(torch.float64)
    out = _weighted_statistics(model, obs, actions, advantages, projection, bounds, idx, X, hidx, Xh)
    out.update(block_rows=np.diff(bounds), rows=n_fit, curvature_rows=len(idx))
    if split_advantages is not None:
        ys, ws = logistic_targets(split_advantages[:n_fit])
        out["split_sums"] = weighted_gradient_sums(model, obs[:n_fit], actions[:n_fit], torch.from_numpy(0.5 * ws * ys),
                                                   np.array([0, n_fit // 2, n_fit]), projection)
    if value_head_advantages is not None:
        out["value_head"] = _weighted_statistics(model, obs, actions, value_head_advantages, projection, bounds, idx,
                                                 X, hidx, Xh)
    return out


CURVATURE_KEYS = ("curvature", "held_curvature", "value_head_curvature", "value_head_held_curvature")
"""The per-task curvatures a block sums over its tasks instead of keeping them."""


class BlockStatistics:
    """One block's statistics file, filled task by task (:meth:`add`) and written by :meth:`save`: per task c, b,
    block sums, held-out c and b and the mean episode return (nan: no episode ended); the two curvatures are
    summed as the tasks arrive, so a block holds O(T R d + d^2) numbers, not T curvatures. Under ``--baseline
    auto`` the value head's c, b, block sums and curvature sums sit beside them as ``value_head_*``."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.tasks: list[dict[str, Any]] = []
        self.returns: list[float] = []
        self.sums: dict[str, np.ndarray] = {}

    def add(self, task: int, stats: dict[str, Any], mean_return: float | None) -> None:
        stats = dict(stats)
        stats.update({f"value_head_{k}": v for k, v in stats.pop("value_head", {}).items()})
        for key in CURVATURE_KEYS:
            if key in stats:
                H = stats.pop(key)
                self.sums[key] = H.copy() if key not in self.sums else self.sums[key] + H
        self.ids.append(task)
        self.tasks.append(stats)
        self.returns.append(np.nan if mean_return is None else mean_return)

    def save(self, path: Path) -> None:
        first = self.tasks[0]
        arrays: dict[str, np.ndarray] = {
            "ids": np.asarray(self.ids, dtype=np.int64), "block_rows": first["block_rows"],
            "rows": np.asarray(first["rows"]), "curvature_rows": np.asarray(first["curvature_rows"]),
            "mean_episode_return": np.asarray(self.returns, dtype=np.float64),
        }
        for prefix in ("", "value_head_"):  # the surrogate's advantages, and the value head's under --baseline auto
            if f"{prefix}c" not in first:
                continue
            arrays.update({f"{prefix}c": np.array([t[f"{prefix}c"] for t in self.tasks]),
                           f"{prefix}b": np.stack([t[f"{prefix}b"] for t in self.tasks]),
                           f"{prefix}block_sums": np.stack([t[f"{prefix}block_sums"] for t in self.tasks]),
                           f"{prefix}curvature_sum": self.sums[f"{prefix}curvature"]})
            if f"{prefix}held_b" in first:
                arrays.update({f"{prefix}held_c": np.array([t[f"{prefix}held_c"] for t in self.tasks]),
                               f"{prefix}held_b": np.stack([t[f"{prefix}held_b"] for t in self.tasks]),
                               f"{prefix}held_curvature_sum": self.sums[f"{prefix}held_curvature"]})
        if "split_sums" in first:
            arrays["split_sums"] = np.stack([t["split_sums"] for t in self.tasks])
        atomic_save_npz(path, **arrays)


def _ordered_sum(mats: list[np.ndarray]) -> np.ndarray:
    total = mats[0].copy()
    for m in mats[1:]:
        total += m
    return total


def returns_of_statistics(paths: list[Path]) -> dict[int, float | None]:
    """Task index -> mean episode return, as the blocks' statistics files recorded them."""
    out: dict[int, float | None] = {}
    for p in paths:
        a = load_npz(p, ("ids", "mean_episode_return"))
        for i, r in zip(a["ids"].tolist(), a["mean_episode_return"].tolist()):
            out[int(i)] = None if math.isnan(r) else float(r)
    return out


def merge_block_statistics(paths: list[Path], n: int) -> Statistics:
    """The run's :class:`.statistics.Statistics` from its blocks' files, added in block order (the same bytes
    whichever backend wrote them)."""
    need = ("ids", "c", "b", "block_sums", "block_rows", "rows", "curvature_rows", "curvature_sum")
    parts = []
    for p in paths:
        a = load_npz(p)
        if not set(need) <= set(a):
            raise PolicyGradExError(f"{p} is not a block statistics file; delete it to recompute the features")
        parts.append(a)
    ids = np.concatenate([a["ids"] for a in parts])
    if not np.array_equal(ids, np.arange(n)):
        raise PolicyGradExError(f"the statistics files in {paths[0].parent} do not cover tasks 0..{n - 1} in order; "
                                "delete them to recompute")
    if len({(a["block_sums"].shape[1:], int(a["rows"]), int(a["curvature_rows"])) for a in parts}) != 1:
        raise PolicyGradExError(f"the statistics files in {paths[0].parent} disagree in shape; delete them to recompute")
    stats = Statistics(c=np.concatenate([a["c"] for a in parts]), b=np.concatenate([a["b"] for a in parts]),
                       curvature=_ordered_sum([a["curvature_sum"] for a in parts]) / n,
                       block_sums=np.concatenate([a["block_sums"] for a in parts]), block_rows=parts[0]["block_rows"],
                       rows=int(parts[0]["rows"]), curvature_rows=int(parts[0]["curvature_rows"]))
    if all("held_b" in a for a in parts):
        stats.held_c = np.concatenate([a["held_c"] for a in parts])
        stats.held_b = np.concatenate([a["held_b"] for a in parts])
        stats.held_curvature = _ordered_sum([a["held_curvature_sum"] for a in parts]) / n
    if all("split_sums" in a for a in parts):
        stats.split_sums = np.concatenate([a["split_sums"] for a in parts])
    return stats
