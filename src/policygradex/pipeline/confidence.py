"""How sure are the groups? Cheap checks that the run report and ``show`` print with every run.

- :func:`bootstrap_groups`: the m subsets are resampled with replacement, U is rebuilt and reclustered with the
  run's k and method, B times. Per group, the mean over resamples of its best Jaccard overlap with a resampled group
  (Hennig's cluster-wise stability, as in R's fpc::clusterboot: >= 0.75 stable, 0.6-0.75 a pattern, < 0.5 dissolved),
  and the co-clustering matrix (how often each pair of tasks shares a group). It sees how much the groups depend on
  which subsets were drawn, not on which transitions (``policygradex stability`` resamples those).
- :func:`gradient_reliability`: each task's transitions split in time halves; the mean advantage-weighted gradient
  feature G_k = mean(|A| sign(A) g~) of each half gives an interaction matrix G G^T; the correlation of the two
  halves' standardised interactions, stepped up by Spearman-Brown. In the linear regime U's interaction is G G^T's
  (corr 0.99 at l2 >= 10 on the planted family), so near 0 the gradient signal at theta_star is below the
  sampling noise of N transitions and no clustering can recover groups from it: raise --transitions.
- :func:`verdict`: one plain sentence from both.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from policygradex.common.errors import PolicyGradExError
from policygradex.pipeline.affinity import subset_affinity
from policygradex.pipeline.clustering import cluster, standardized_corr
from policygradex.pipeline.partitions import groups_from_labels

STABLE, PATTERN, DISSOLVED = 0.75, 0.6, 0.5
"""Hennig's reading of a group's mean Jaccard: stable, a pattern, weak, dissolved below 0.5."""
GRADIENT_MIN = 0.5
"""Below this gradient reliability the verdict says the signal is mostly sampling noise."""


def stability_word(jaccard: float) -> str:
    """stable (>= 0.75), pattern (>= 0.6), weak (>= 0.5) or dissolves."""
    if jaccard >= STABLE:
        return "stable"
    return "pattern" if jaccard >= PATTERN else ("weak" if jaccard >= DISSOLVED else "dissolves")


def _jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b)


def bootstrap_groups(subsets: list[list[int]], f_hat: np.ndarray, n: int, labels: np.ndarray, reps: int = 200,
                     seed: int = 0, interaction: bool = True, **cluster_kwargs: Any) -> dict[str, Any]:
    """Resample the subsets with replacement ``reps`` times; recluster with the run's k (``cluster_kwargs``)."""
    rng = np.random.default_rng(seed)
    groups = [set(g) for g in groups_from_labels(labels)]
    k = len(groups)
    co = np.zeros((n, n))
    jac = np.zeros((reps, k))
    used = 0
    for r in range(reps):
        idx = rng.integers(0, len(subsets), len(subsets))
        sub = [subsets[j] for j in idx]
        try:
            U = subset_affinity(sub, f_hat[idx], n, interaction)
        except PolicyGradExError:  # a resample in which two tasks share no subset: skipped (rare at the default m)
            continue
        lab = cluster(U, k=k, exhaustive_check=False, relaxation_gap=False, **cluster_kwargs).labels
        co += lab[:, None] == lab[None, :]
        boot = [set(g) for g in groups_from_labels(lab)]
        jac[used] = [max(_jaccard(g, b) for b in boot) for g in groups]
        used += 1
    jac = jac[:used]
    return {"reps": used, "group_jaccard": jac.mean(0).tolist() if used else [float("nan")] * k,
            "coclustering": (co / max(used, 1)).tolist()}


def gradient_reliability(features: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float | None:
    """Split-half (in time) reliability of the gradient interaction G G^T, stepped up by Spearman-Brown.

    features (n, N, d), labels sign(A) and weights |A| (n, N)."""
    n, N = labels.shape
    if N < 4 or n < 3:
        return None
    yw = (labels * weights)[..., None]
    halves = [(yw[:, sl] * features[:, sl]).mean(1).astype(np.float64) for sl in (slice(0, N // 2), slice(N // 2, N))]
    r = standardized_corr(halves[0] @ halves[0].T, halves[1] @ halves[1].T)
    if np.isnan(r):
        return None
    return float(2 * r / (1 + r)) if r > -1 else float(r)


def verdict(group_jaccard: list[float], split_half: float | None, gradient: float | None) -> str:
    """A plain-language sentence on whether the groups stand out from noise."""
    worst = min(group_jaccard) if group_jaccard else float("nan")
    mean = float(np.mean(group_jaccard)) if group_jaccard else float("nan")
    noise = []
    if gradient is not None and gradient < GRADIENT_MIN:
        noise.append(f"the gradient signal at theta_star is mostly sampling noise (split-half reliability "
                     f"{gradient:.2f} over transitions: raise --transitions)")
    if split_half is not None and split_half < 0.3:
        noise.append(f"U is not reproducible across halves of the subsets (reliability {split_half:.2f}: raise "
                     "--num-subsets)")
    if mean < DISSOLVED or noise:
        return ("Not distinguishable from noise: " + "; ".join(noise or [f"the groups dissolve when the subsets are "
                f"resampled (mean Jaccard {mean:.2f})"]) + ". Treat these groups as a guess.")
    if worst >= STABLE:
        return f"Stable: every group survives resampling of the subsets (Jaccard >= {worst:.2f})."
    return (f"Partly stable: mean Jaccard {mean:.2f}; groups below {PATTERN} are patterns at best, those below "
            f"{DISSOLVED} dissolve when the subsets are resampled.")
