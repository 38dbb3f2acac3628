"""Stage 4: the n x n task-affinity matrix (paper eq. 5).

``subset`` (the paper): U_ij = (1 / n_ij) * sum of f^(S_l) over the n_ij subsets holding both i and j; the
diagonal averages over subsets holding i. ``per_target``: U_ij = mean over those subsets of task i's own
negated loss -L_{S,i}(v_S) (how well task i is served when trained with j), symmetrised as (U + U^T) / 2
before clustering; the asymmetric matrix is kept as ``affinity_directed``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from policygradex.common.errors import PolicyGradExError
from policygradex.pipeline.surrogate import pair_counts


def additive_residuals(subsets: list[list[int]], f: np.ndarray, n: int) -> np.ndarray:
    """f(S) minus its least-squares fit c + sum_{k in S} a_k over the subsets: the part of f that no per-task
    effect explains, i.e. what depends on which tasks are together."""
    Z = np.zeros((len(subsets), n + 1))
    Z[:, n] = 1.0
    for j, s in enumerate(subsets):
        Z[j, s] = 1.0
    y = np.asarray(f, dtype=np.float64)
    coef, *_ = np.linalg.lstsq(Z, y, rcond=None)
    return y - Z @ coef


def subset_affinity(subsets: list[list[int]], f_hat: np.ndarray, n: int, interaction: bool = True) -> np.ndarray:
    """Eq. 5: U_ij = mean of f^(S) over subsets S that contain both i and j.

    ``interaction=True`` (default) averages :func:`additive_residuals` instead of f^ (the diagonal is then 0);
    ``False`` is the paper's eq. 5 on f^ itself (``--interaction matrix``). The per-task
    effects in f^ (each task's own loss and gradient size) are orders of magnitude above the pairwise part; eq. 5
    averages them in too, and unless every subset is used they do not cancel: U_ij then carries the effects of
    the third tasks that happened to share subsets with i and j. Removing them from f^ first leaves U with the
    pairwise part alone. With all C(n, alpha) subsets the two give the same standardised U."""
    if interaction:
        f_hat = additive_residuals(subsets, f_hat, n)
    total = np.zeros((n, n))
    for s, f in zip(subsets, f_hat):
        idx = np.asarray(s)
        total[np.ix_(idx, idx)] += f
    counts = pair_counts(subsets, n)
    if (counts == 0).any():
        i, j = np.argwhere(counts == 0)[0]
        raise PolicyGradExError(f"tasks {i} and {j} share no subset; raise --num-subsets")
    U = total / counts
    if interaction:
        np.fill_diagonal(U, 0.0)
    return U


def per_target_affinity(subsets: list[list[int]], task_loss: np.ndarray, n: int) -> np.ndarray:
    """Directed U_ij = mean over subsets holding i and j of -(task i's own loss at v_S)."""
    total = np.zeros((n, n))
    for s, losses in zip(subsets, task_loss):
        idx = np.asarray(s)
        total[np.ix_(idx, idx)] += -losses[idx][:, None]
    counts = pair_counts(subsets, n)
    if (counts == 0).any():
        i, j = np.argwhere(counts == 0)[0]
        raise PolicyGradExError(f"tasks {i} and {j} share no subset; raise --num-subsets")
    return total / counts


def affinity_matrix(kind: str, subsets: list[list[int]], f_hat: np.ndarray, task_loss: np.ndarray, n: int,
                    interaction: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(symmetric U, directed U for ``per_target`` or None); ``interaction``: see :func:`subset_affinity`."""
    if kind == "subset":
        return subset_affinity(subsets, f_hat, n, interaction), None
    if kind == "per_target":
        directed = per_target_affinity(subsets, task_loss, n)
        return (directed + directed.T) / 2, directed
    raise PolicyGradExError(f"unknown affinity {kind!r}; choose 'subset' or 'per_target'")


def spearman_brown(r: float) -> float:
    """A split-half correlation r stepped up to the whole, 2r / (1 + r) (r itself at r = -1)."""
    return float(2 * r / (1 + r)) if r > -1 else float(r)


def halves_reliability(rs: list[float]) -> dict[str, Any] | None:
    """Split-half reliability from the correlations ``rs`` between halves' standardised interactions (one per
    halving; NaN where undefined, dropped): their mean stepped up by Spearman-Brown. ``reliability``, ``r_mean``,
    ``r_sd``, ``splits``; None when no halving gave a correlation. The callers correlate each halving's pair of U
    as they go, so no more than one pair of n x n matrices is held at a time."""
    rs = [r for r in rs if not np.isnan(r)]
    if not rs:
        return None
    r = float(np.mean(rs))
    return {"reliability": spearman_brown(r), "r_mean": r, "r_sd": float(np.std(rs)), "splits": len(rs)}


def split_half_reliability(
    subsets: list[list[int]], f_hat: np.ndarray | list[np.ndarray], n: int, kind: str = "subset",
    task_loss: np.ndarray | None = None,
    splits: int = 50, seed: int = 0, interaction: bool = True, weights: list[float] | None = None,
) -> dict[str, float | int] | None:
    """How reproducible the affinity is over the subsets: U from one random half of the *distinct* subsets vs U
    from the other half.

    Each half's U is built as the run builds the U it clusters: with per-task effects removed from f^ first
    (``interaction=True``, ``--interaction subsets``) or eq. 5 on f^ itself (``False``, ``--interaction matrix``).
    The halves are incomplete designs, and under ``matrix`` per-task effects leak into their U's through unbalanced
    co-membership: complementary halves anti-correlated (r ~ -0.95 on the planted family with all 252 subsets split
    in two), which is what that option's U is worth.
    Pearson correlation r of the two halves' standardised off-diagonal entries (the part clustering sees), averaged
    over ``splits`` random halvings and stepped up to all subsets by Spearman-Brown, 2r / (1 + r). A subset that
    occurs more than once stays on one side with all its copies: on both sides it would correlate with itself and
    inflate r. Returns ``reliability``, ``r_mean``, ``r_sd`` (over splits), ``splits`` (those where both halves cover
    every pair), ``distinct_subsets`` and the number of subsets per pair in a half (``pair_min``, ``pair_median``);
    None when no halving covers every pair. ``f_hat`` may be a list of several expansion points' f^ on the same
    subsets (``subset`` affinity): each half's U is then the mean of the points' standardised U's (weighted by
    ``weights``, the run's point weights, where given).
    """
    from policygradex.pipeline.clustering import combine, standardized_corr

    f_hats = f_hat if isinstance(f_hat, list) else [f_hat]

    keys: dict[tuple[int, ...], list[int]] = {}
    for j, s in enumerate(subsets):
        keys.setdefault(tuple(sorted(s)), []).append(j)
    groups = list(keys.values())
    rng = np.random.default_rng(seed)
    rs, per_pair = [], []
    for _ in range(splits):
        side = rng.permutation(len(groups)) < len(groups) // 2
        halves, ok = [], True
        for flag in (True, False):
            idx = [j for g, sd in zip(groups, side) if sd == flag for j in g]
            sub = [subsets[j] for j in idx]
            counts = pair_counts(sub, n)[np.triu_indices(n, 1)]
            if (counts == 0).any():
                ok = False
                break
            per_pair.append(counts)
            tl = task_loss[idx] if task_loss is not None else np.zeros((len(idx), n))
            Us = [affinity_matrix(kind, sub, fh[idx], tl, n, interaction=interaction)[0] for fh in f_hats]
            halves.append(combine(Us, weights))
        if ok:
            rs.append(standardized_corr(halves[0], halves[1]))
    out = halves_reliability(rs)
    if out is None:
        return None
    pp = np.concatenate(per_pair)
    return {
        **out,
        "distinct_subsets": len(groups),
        "pair_min": int(pp.min()),
        "pair_median": float(np.median(pp)),
        "interaction": "subsets" if interaction else "matrix",
    }
