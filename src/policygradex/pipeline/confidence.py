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
- :func:`transition_bootstrap` and :func:`transition_split_half` (``--surrogate closed_form``, which has no
  subsets): the same two checks over *transitions*, through the replicate statistics of
  :mod:`.statistics` (each task's fitting rows in R contiguous blocks): a bootstrap that redraws each task's blocks
  with replacement, and halves of each task's blocks. Each replicate costs one closed form (O(n d^2 + n^2 d)) and,
  for the bootstrap, one clustering warm-started from the run's groups: no pass over the features.
- :func:`verdict`: one plain sentence from both.

With several expansion points (``--expansion-points``) every check resamples every point and reads their combined U
(:func:`.clustering.combine`): :func:`resampled_stability` draws each point's replicate in turn (the subsets once for
all points, as the run drew them; each point's own transitions), the split halves halve every point, and
:func:`interaction_reliability` combines the points' G G^T.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from policygradex.common.errors import PolicyGradExError
from policygradex.pipeline.affinity import halves_reliability, spearman_brown, subset_affinity
from policygradex.pipeline.clustering import cluster, combine, standardized_corr
from policygradex.pipeline.partitions import groups_from_labels
from policygradex.pipeline.closed_form import CurvatureTerms, expected_affinity
from policygradex.pipeline.features import fit_rows
from policygradex.pipeline.statistics import Statistics

COCLUSTERING_MAX_N = 100
"""The bootstrap's n x n co-clustering matrix is kept (in groups.json) up to this many tasks."""

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


Replicate = Callable[[np.random.Generator], "np.ndarray | None"]
"""Draws one resample with the generator and returns the affinity rebuilt from it (None: an unusable resample)."""


def subset_replicate(subsets: list[list[int]], f_hats: Sequence[np.ndarray], n: int,
                     interaction: bool = True, weights: Sequence[float] | None = None) -> Replicate:
    """Resamples of the m subsets with replacement; with several expansion points (one f^ each, on the same subsets)
    every point is rebuilt from the same draw, as the run drew its subsets once for all of them, and their U's are
    combined with the run's point ``weights``."""
    def draw(rng: np.random.Generator) -> np.ndarray | None:
        idx = rng.integers(0, len(subsets), len(subsets))
        sub = [subsets[j] for j in idx]
        try:
            return combine([subset_affinity(sub, f_hat[idx], n, interaction) for f_hat in f_hats], weights)
        except PolicyGradExError:  # a resample in which two tasks share no subset: skipped (rare at the default m)
            return None
    return draw


def transition_replicate(stats: Statistics, l2: float, alpha: int, terms: CurvatureTerms | None = None) -> Replicate:
    """Block-bootstrap resamples of each task's transitions through the closed form (:func:`transition_bootstrap`)."""
    def draw(rng: np.random.Generator) -> np.ndarray:
        R = stats.blocks
        counts = np.stack([np.bincount(rng.integers(0, R, R), minlength=R) for _ in range(stats.n)]).astype(np.float64)
        return expected_affinity(stats, l2, alpha, terms, b=stats.reweighted_b(counts))
    return draw


def resampled_stability(replicates: Sequence[Replicate], n: int, labels: np.ndarray, reps: int = 200, seed: int = 0,
                        weights: Sequence[float] | None = None, **cluster_kwargs: Any) -> dict[str, Any]:
    """Hennig's cluster-wise stability: ``reps`` times, every replicate draws (in order, from one generator), their
    U's are combined (:func:`combine`, with the run's point ``weights``) and clustered with the run's k (``cluster_kwargs``), the run's groups as one
    more start. Returns ``reps`` (resamples used: one where any replicate gave None is skipped), the mean Jaccard
    per group and, for n <= COCLUSTERING_MAX_N, the (n, n) co-clustering matrix (else None)."""
    rng = np.random.default_rng(seed)
    groups = [set(g) for g in groups_from_labels(labels)]
    k = len(groups)
    co = np.zeros((n, n)) if n <= COCLUSTERING_MAX_N else None
    jac = np.zeros((reps, k))
    used = 0
    for _ in range(reps):
        Us = [draw(rng) for draw in replicates]
        if any(U is None for U in Us):
            continue
        lab = cluster(combine(Us, weights), k=k, exhaustive_check=False, relaxation_gap=False, init=labels,
                      **cluster_kwargs).labels
        if co is not None:
            co += lab[:, None] == lab[None, :]
        jac[used] = _group_jaccards(groups, lab)
        used += 1
    jac = jac[:used]
    return {"reps": used, "group_jaccard": jac.mean(0).tolist() if used else [float("nan")] * k,
            "coclustering": None if co is None else co / max(used, 1)}


def bootstrap_groups(subsets: list[list[int]], f_hat: np.ndarray, n: int, labels: np.ndarray, reps: int = 200,
                     seed: int = 0, interaction: bool = True, weights: Sequence[float] | None = None,
                     **cluster_kwargs: Any) -> dict[str, Any]:
    """Resample the subsets with replacement ``reps`` times; recluster with the run's k (``cluster_kwargs``), the
    run's groups as one more start. Returns ``reps`` (resamples used), the mean Jaccard per group and, for
    n <= COCLUSTERING_MAX_N, the (n, n) co-clustering matrix (else None). ``f_hat`` may be a list of several
    expansion points' f^ on the same subsets (:func:`subset_replicate`, combined with the point ``weights``)."""
    f_hats = f_hat if isinstance(f_hat, list) else [f_hat]
    return resampled_stability([subset_replicate(subsets, f_hats, n, interaction, weights)], n, labels, reps, seed,
                               **cluster_kwargs)


def _group_jaccards(groups: list[set[int]], labels: np.ndarray) -> list[float]:
    boot = [set(g) for g in groups_from_labels(labels)]
    return [max(_jaccard(g, b) for b in boot) for g in groups]


def transition_bootstrap(stats: Statistics, l2: float, alpha: int, labels: np.ndarray,
                         terms: CurvatureTerms | None = None, reps: int = 50, seed: int = 0,
                         **cluster_kwargs: Any) -> dict[str, Any]:
    """Hennig's cluster-wise stability over transitions: ``reps`` times, every task's R blocks of fitting rows are
    drawn R times with replacement (a block bootstrap: blocks keep the correlation of consecutive transitions), its
    b_k recomputed from the drawn blocks, the closed-form U rebuilt and clustered with the run's k, starting from
    the run's groups (``init``) as well as the clustering's own starts. The curvature is kept fixed (the shared one
    and, with ``terms``, the first-order part of U computed from all transitions): the replicates resample b_k,
    whose noise dominates. Always the in-sample closed form (replicates of the held-out rows are not kept). The
    advantages are fixed too: under ``--baseline per_task`` the value functions fitted on all the transitions are
    not refitted per replicate, so the fit's own error is not resampled and the Jaccard can be optimistic (the
    gradient reliability, fitted apart per half, is not). Returns the mean Jaccard per group, ``reps`` and, for
    n <= COCLUSTERING_MAX_N, the co-clustering matrix."""
    out = resampled_stability([transition_replicate(stats, l2, alpha, terms)], stats.n, labels, reps, seed,
                              **cluster_kwargs)
    if out["coclustering"] is None:
        del out["coclustering"]
    return {**out, "resampled": "transitions"}


def transition_split_half(stats: Statistics | Sequence[Statistics], l2: float, alpha: int, splits: int = 50,
                          seed: int = 0, weights: Sequence[float] | None = None) -> dict[str, Any] | None:
    """Split-half reliability of the closed-form U over transitions: each task's blocks split at random in two
    halves, U from each (the shared-curvature part: a first-order part computed from all transitions would be
    common to both halves and inflate r), Pearson r of their standardised off-diagonal entries averaged over ``splits`` halvings,
    stepped up by Spearman-Brown (2r / (1 + r)). The same keys as :func:`.affinity.split_half_reliability` where
    they apply, with ``blocks`` instead of subsets. None with fewer than 2 blocks or 3 tasks. A list of several
    expansion points' statistics: each point's blocks halved on their own, each half's U :func:`combine`-d (with
    the point ``weights``)."""
    points = [stats] if isinstance(stats, Statistics) else list(stats)
    n, R = points[0].n, min(p.blocks for p in points)
    if R < 2 or n < 3:
        return None
    rng = np.random.default_rng(seed)
    rs = []
    for _ in range(splits):
        pairs = []
        for p in points:
            side = np.argsort(rng.random((n, p.blocks)), axis=1) < p.blocks // 2  # each task: a uniform half
            pairs.append([expected_affinity(p, l2, alpha, b=p.reweighted_b(mask.astype(np.float64)))
                          for mask in (side, ~side)])
        rs.append(standardized_corr(combine([a for a, _ in pairs], weights), combine([b for _, b in pairs], weights)))
    out = halves_reliability(rs)
    return None if out is None else {**out, "blocks": R, "resampled": "transitions"}


def gradient_halves_from_blocks(stats: Statistics) -> tuple[np.ndarray, np.ndarray] | None:
    """Each task's G over the first and the second half (in time) of its blocks, (n, d) each; None below 2 blocks.
    Statistics with ``split_sums`` (the per-task baseline) give those instead: each half's advantages from its own
    baseline fit, so the halves share no fit."""
    if stats.split_sums is not None:
        return stats.split_sums[:, 0], stats.split_sums[:, 1]
    return block_halves(stats.block_sums)


def block_halves(block_sums: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(n, d) sums over the first and over the second half of the R blocks of (n, R, d) ``block_sums``; None below
    2 blocks."""
    R = block_sums.shape[1]
    if R < 2:
        return None
    first, second = (block_sums[:, sl].sum(1) for sl in (slice(0, R // 2), slice(R // 2, R)))
    return first, second


def gradient_halves(features: np.ndarray, labels: np.ndarray, weights: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray] | None:
    """Each task's advantage-weighted mean gradient feature G_k = mean(sign(A) |A| g~) over the first and the second
    half (in time) of its transitions, (n, d) float64 each; None below 4 transitions."""
    N = labels.shape[1]
    if N < 4:
        return None
    yw = (labels * weights)[..., None]
    first, second = ((yw[:, sl] * features[:, sl]).mean(1).astype(np.float64)
                     for sl in (slice(0, N // 2), slice(N // 2, N)))
    return first, second


def task_fitting_halves(features: np.ndarray, labels: np.ndarray, weights: np.ndarray, holdout_fraction: float
                        ) -> tuple[np.ndarray, np.ndarray] | None:
    """One task's G over the first and the second half of its fitting rows (:func:`.features.fit_rows` of its N
    transitions, (N, d) features), (d,) float64 each: the halves a task contributes to the gradient signal's
    split-half reliability. None below 4 fitting rows."""
    m = fit_rows(labels.shape[0], holdout_fraction)
    halves = gradient_halves(features[None, :m], labels[None, :m], weights[None, :m])
    return None if halves is None else (halves[0][0], halves[1][0])


def gradient_reliability_from_blocks(stats: Statistics) -> float | None:
    """:func:`gradient_reliability` from the replicate statistics: the first and second half (in time) of each task's
    blocks give the two G's."""
    halves = gradient_halves_from_blocks(stats)
    return None if halves is None or stats.n < 3 else interaction_reliability(*halves)


WEAK_TASK = 0.5
"""Below this :func:`task_signal` a task's gradient does not reproduce across halves of its transitions: its
group is a guess, and ``show`` and the report name it."""


def task_signal(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Per task, how well its gradient signal reproduces across the two halves (in time) of its transitions: the
    cosine of its two halves' G_k after the mean over tasks is removed from each half (what every task shares, such
    as balancing the pole, says nothing about which group a task is in), stepped up by Spearman-Brown
    (2 c / (1 + c), the reliability of the whole from that of halves). 1: the same direction in both halves;
    about 0 or below: the task's own direction is noise at this N. O(n d)."""
    a, b = first - first.mean(0), second - second.mean(0)
    norm = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    c = np.sum(a * b, axis=1) / np.where(norm > 0, norm, np.inf)  # 0 for a task with no signal at all
    c = np.clip(c, -1.0 + 1e-9, 1.0)
    return np.clip(2.0 * c / (1.0 + c), -1.0, 1.0)


def interaction_reliability(G_first: np.ndarray | Sequence[np.ndarray],
                            G_second: np.ndarray | Sequence[np.ndarray],
                            weights: Sequence[float] | None = None) -> float | None:
    """Spearman-Brown reliability of G G^T from two halves' per-task G (n, d); None when either has no structure.
    Lists of several expansion points' halves: each half's G G^T over the points :func:`combine`-d (with the point
    ``weights``), as U is."""
    firsts = [G_first] if isinstance(G_first, np.ndarray) else list(G_first)
    seconds = [G_second] if isinstance(G_second, np.ndarray) else list(G_second)
    r = standardized_corr(combine([G @ G.T for G in firsts], weights), combine([G @ G.T for G in seconds], weights))
    return None if np.isnan(r) else spearman_brown(r)


def gradient_reliability(features: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float | None:
    """Split-half (in time) reliability of the gradient interaction G G^T, stepped up by Spearman-Brown.

    features (n, N, d), labels sign(A) and weights |A| (n, N)."""
    halves = gradient_halves(features, labels, weights)
    return None if halves is None or labels.shape[0] < 3 else interaction_reliability(*halves)


def is_noise(group_jaccard: list[float] | tuple[float, ...], split_half: float | None, gradient: float | None) -> bool:
    """Whether :func:`verdict` calls the groups indistinguishable from noise: the gradient signal below
    GRADIENT_MIN, U not reproducible across halves (split-half < 0.3), or the groups dissolving (mean Jaccard < 0.5).
    Then no group is called stable, whatever its own Jaccard."""
    mean = float(np.mean(group_jaccard)) if group_jaccard else float("nan")
    return bool((gradient is not None and gradient < GRADIENT_MIN) or (split_half is not None and split_half < 0.3)
                or mean < DISSOLVED)


def verdict(group_jaccard: list[float], split_half: float | None, gradient: float | None,
            resampled: str = "subsets", bootstrapped: str | None = None, where: str = "at theta_star") -> str:
    """A plain-language sentence on whether the groups stand out from noise; ``resampled``: what the split halves
    resampled (``subsets`` or ``transitions``); ``bootstrapped``: what the bootstraps behind ``group_jaccard``
    resampled (default: the same; ``subsets and transitions`` when each group's Jaccard is the lower of two);
    ``where``: where the gradient signal was taken (``at the expansion points`` for a combined U)."""
    worst = min(group_jaccard) if group_jaccard else float("nan")
    mean = float(np.mean(group_jaccard)) if group_jaccard else float("nan")
    noise = []
    if gradient is not None and gradient < GRADIENT_MIN:
        noise.append(f"the gradient signal {where} is mostly sampling noise (split-half reliability "
                     f"{gradient:.2f} over transitions: raise --transitions)")
    if split_half is not None and split_half < 0.3:
        fix = "--num-subsets" if resampled == "subsets" else "--transitions"
        noise.append(f"U is not reproducible across halves of the {resampled} (reliability {split_half:.2f}: raise "
                     f"{fix})")
    over = bootstrapped or resampled
    if mean < DISSOLVED or noise:
        return ("Not distinguishable from noise: " + "; ".join(noise or [f"the groups dissolve when the {over} "
                f"are resampled (mean Jaccard {mean:.2f})"]) + ". Treat these groups as a guess.")
    if worst >= STABLE:
        return f"Stable: every group survives resampling of the {over} (Jaccard >= {worst:.2f})."
    return (f"Partly stable: mean Jaccard {mean:.2f}; groups below {STABLE} are patterns at best (below {PATTERN}: "
            f"weak), those below {DISSOLVED} dissolve when the {over} are resampled.")
