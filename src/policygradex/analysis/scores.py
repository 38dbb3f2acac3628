"""How an estimated affinity agrees with the real one: NMI of the groups against chance, relative error of U, Spearman
of the interaction parts, test-retest agreement of real training, and all of them at once (score_against_truth)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import normalized_mutual_info_score

from policygradex.pipeline.affinity import additive_residuals, subset_affinity
from policygradex.pipeline.clustering import cluster, standardize, standardized_corr


def mean_spread(mean: float, std: float, seeds: int, digits: int = 1) -> str:
    """A table cell "mean ± std" over seeds; the mean alone for one seed, where there is no spread to show."""
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if seeds > 1 else "")


def seeds_phrase(seeds: int) -> str:
    """How a table's caption names its cells: "mean ± std over N seeds", or "one seed"."""
    return f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed (no spread)"


def random_nmi(reference: np.ndarray, sizes: list[int], draws: int, seed: int) -> tuple[float, float]:
    """Mean and std of NMI between ``reference`` and random partitions with the given group sizes."""
    rng = np.random.default_rng(seed)
    base = np.repeat(np.arange(len(sizes)), sizes)
    scores = [normalized_mutual_info_score(reference, rng.permutation(base)) for _ in range(draws)]
    return float(np.mean(scores)), float(np.std(scores))


def relative_error(U: np.ndarray, U_true: np.ndarray) -> float:
    """||std(U) - std(U_true)||_F / ||std(U_true)||_F after the SDP's standardisation (NaN if U_true is flat)."""
    A, B = standardize(U), standardize(U_true)
    denom = np.linalg.norm(B)
    return float(np.linalg.norm(A - B) / denom) if denom > 0 else float("nan")


def interaction_spearman(subsets: list[list[int]], f_hat: np.ndarray, f: np.ndarray, n: int) -> float:
    """Spearman between the parts of f^ and f that additive per-task effects do not explain.

    Both are regressed on subset membership (f(S) ~ c + sum_{i in S} u_i, least squares) and the residuals are
    correlated. This is the part clustering sees (it removes additive effects from U): a task that is easy or hard in every
    subset moves f(S) a lot but says nothing about which tasks belong together."""
    r_hat, r = additive_residuals(subsets, f_hat, n), additive_residuals(subsets, f, n)
    if r_hat.std() < 1e-12 or r.std() < 1e-12:
        return float("nan")
    return float(spearmanr(r_hat, r).statistic)


def test_retest(subsets: list[list[int]], f_hat: np.ndarray, replicates: np.ndarray, labels_est: np.ndarray, k: int,
                solver: str) -> dict[str, float]:
    """How reproducible the ground truth itself is, and how the surrogate compares with that, on equal footing.

    ``replicates`` (R >= 2, m) holds f(S) from R independent fine-tunings of every subset. They are split into two
    halves (even and odd replicates); each half's mean gives a U_true and groups. Returned:

    - ``nmi_halves``: NMI between the two halves' groups: what real training with R/2 seeds agrees with itself (the
      full ground truth averages R seeds, so it is at least this reproducible);
    - ``nmi_estimated_vs_halves``: mean NMI between the surrogate's groups and each half's, on the same footing;
    - ``spearman_halves`` / ``spearman_estimated_vs_halves``: the same for f over the subsets;
    - ``spearman_interaction_halves`` / ``spearman_interaction_estimated_vs_halves``: the same after removing
      additive per-task effects (:func:`interaction_spearman`);
    - ``reliability_seeds``: Pearson correlation of the two halves' standardised U_true (off the diagonal), stepped
      up to all R seeds by Spearman-Brown, 2r / (1 + r): the seed-to-seed reliability of U_true.
    """
    n = len(labels_est)
    halves = [replicates[0::2].mean(axis=0), replicates[1::2].mean(axis=0)]
    Us = [subset_affinity(subsets, f, n) for f in halves]
    labels = [cluster(U, k=k, solver=solver, exhaustive_check=False).labels for U in Us]
    r = standardized_corr(Us[0], Us[1])

    def rho(x: np.ndarray, y: np.ndarray) -> float:
        return float(spearmanr(x, y).statistic) if np.std(x) > 0 and np.std(y) > 0 else float("nan")

    return {
        "nmi_halves": float(normalized_mutual_info_score(labels[0], labels[1])),
        "nmi_estimated_vs_halves": float(np.mean([normalized_mutual_info_score(labels_est, lab) for lab in labels])),
        "spearman_halves": rho(halves[0], halves[1]),
        "spearman_estimated_vs_halves": float(np.mean([rho(f_hat, h) for h in halves])),
        "spearman_interaction_halves": interaction_spearman(subsets, halves[0], halves[1], n),
        "spearman_interaction_estimated_vs_halves":
            float(np.mean([interaction_spearman(subsets, f_hat, h, n) for h in halves])),
        "reliability_seeds": 2 * r / (1 + r) if r > -1 else r,
    }


def score_against_truth(f_hat: np.ndarray, labels: np.ndarray, all_subsets: list[list[int]],
                        truth_subsets: list[list[int]], f_true: np.ndarray, U_true: np.ndarray,
                        labels_true: np.ndarray) -> dict[str, float]:
    """One estimate f^ over all the run's subsets (and its groups ``labels``) against the ground truth on its first
    m = len(f_true) subsets: NMI with the true groups, Spearman with f (raw and without additive task effects), and
    the correlation of the standardised U (eq. 5 over all subsets) with the standardised U_true."""
    n, m = len(labels), len(f_true)
    return {"nmi": float(normalized_mutual_info_score(labels_true, labels)),
            "spearman": float(spearmanr(f_hat[:m], f_true).statistic),
            "spearman_interaction": interaction_spearman(truth_subsets, f_hat[:m], f_true, n),
            "corr_standardized_U": standardized_corr(subset_affinity(all_subsets, f_hat, n), U_true)}


def per_task_lines(per_task: dict[str, dict[str, Any]], headline: str) -> list[str]:
    """A saved policy's evaluation as Markdown: a row per task with its return (mean ± std over the episodes) and
    the family's headline metric, then each vector metric per task (an MO family's return per objective)."""
    lines = ["| task | return |" + (f" {headline} |" if headline != "return" else ""),
             "|---|---|" + ("---|" if headline != "return" else "")]
    for name, m in per_task.items():
        extra = f" {m[headline]:.3f} |" if headline != "return" else ""
        lines.append(f"| {name} | {m['return']:.1f} ± {m['return_std']:.1f} |{extra}")
    for key in [k for k, v in next(iter(per_task.values())).items() if isinstance(v, list)]:
        lines += ["", f"{key} (mean per objective): " + "; ".join(
            f"{name} ({', '.join(f'{x:.1f}' for x in m[key])})" for name, m in per_task.items())]
    return lines
