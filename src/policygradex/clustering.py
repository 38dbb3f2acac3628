"""Stage 5: group the tasks by the trace-regularised SDP relaxation (Awasthi et al. 2015; Peng and Wei's k-means SDP).

    maximize <U, X> - lambda tr(X)   s.t.  X symmetric PSD, X >= 0 entrywise, X 1 = 1        (penalty form)
    maximize <U, X>                  s.t.  the same and tr(X) = k                           (fixed-k form)

For a partition, X = sum_G 1_G 1_G^T / |G| is feasible with tr(X) = k, so the program relaxes "maximise the
size-weighted within-group affinity". Adding a constant to U changes <U, X> by a constant (sum X = n), but
scaling U rescales lambda's effect, so U is standardised first (:func:`standardize`: double-centred, diagonal zeroed,
std 1 off the diagonal): lambda is then in standard deviations of the pairwise interaction and comparable across runs.

Rounding: X's rows are near-identical within a group (exactly 1_G / |G| at an integral solution), so the rows are
clustered by average-linkage hierarchical clustering cut at k groups (k given, or round(tr X) in the penalty form).
This is deterministic, exact on planted block structure, and a single cluster (X = J/n, tr X = 1) stays whole,
unlike thresholding X > 1/n, which splits it at random. A fractional X can round to a suboptimal partition, so
single-task moves that raise <U, X_partition> are then applied (:func:`refine`); the exhaustive check (n <= 12)
reports whether the result is the best partition with that k.

Without k or lambda, lambda runs over a log-spaced grid; each distinct rounded partition on that path is scored by its
silhouette under the dissimilarity max(U) - U, and the best is kept, unless no partition reaches ``min_silhouette``
(0.25, Kaufman and Rousseeuw's "no substantial structure" line), in which case all tasks form one group. (Keeping
the partition that persists longest on the grid was tried first: it depends on the grid's spacing and picked
fractional low-lambda solutions on planted blocks.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np
from scipy.cluster.hierarchy import cut_tree, linkage
from sklearn.metrics import silhouette_score

from .errors import PolicyGradExError

EXHAUSTIVE_MAX_N = 12


def standardize(U: np.ndarray) -> np.ndarray:
    """Interaction part of U in standard deviations: symmetrise, double-centre, zero the diagonal, scale to std 1.

    Double-centring removes additive per-task effects u_i + u_j (e.g. a task whose subsets have low loss for every
    partner). The SDP objective is blind to them anyway (<u 1^T + 1 u^T, X> = 2 u^T 1 since X 1 = 1), but they
    would inflate the scale that lambda is measured in and dominate the silhouette. The diagonal U_ii of eq. 5 is
    such a per-task effect, not an affinity, so it is set to 0 (a singleton group scores 0). Returns all zeros when
    U has no interaction structure (e.g. a constant matrix).
    """
    U = np.asarray(U, dtype=np.float64)
    U = (U + U.T) / 2
    n = U.shape[0]
    off = ~np.eye(n, dtype=bool)
    masked = np.where(off, U, np.nan)
    row = np.nanmean(masked, axis=1)
    C = U - row[:, None] - row[None, :] + np.nanmean(masked)
    C[~off] = 0.0
    sd = C[off].std()
    if sd <= 1e-9 * max(1.0, float(np.abs(U[off]).max(initial=0.0))):
        return np.zeros_like(U)
    return C / sd


def standardized_corr(U: np.ndarray, V: np.ndarray) -> float:
    """Pearson correlation of the off-diagonal entries of standardize(U) and standardize(V): how alike the parts of
    two affinity matrices that the SDP sees are. NaN when either has no interaction structure."""
    off = ~np.eye(np.asarray(U).shape[0], dtype=bool)
    a, b = standardize(U)[off], standardize(V)[off]
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")


def canonical(labels: np.ndarray) -> np.ndarray:
    """Relabel so groups are numbered by first appearance (0, 1, ...)."""
    mapping: dict[int, int] = {}
    return np.array([mapping.setdefault(int(x), len(mapping)) for x in labels], dtype=np.int64)


def labels_from_groups(groups: list[list[int]], n: int) -> np.ndarray:
    """Group index of each of the n tasks (the inverse of :func:`groups_from_labels`)."""
    labels = np.zeros(n, dtype=np.int64)
    for g, members in enumerate(groups):
        labels[members] = g
    return labels


def groups_from_labels(labels: np.ndarray) -> list[list[int]]:
    labels = canonical(labels)
    return [np.flatnonzero(labels == g).tolist() for g in range(labels.max() + 1)]


def partition_objective(U: np.ndarray, labels: np.ndarray) -> float:
    """<U, X> for the partition's X: sum over groups of (sum of U within the group) / group size."""
    total = 0.0
    for g in groups_from_labels(labels):
        total += U[np.ix_(g, g)].sum() / len(g)
    return float(total)


def solve_sdp(U_std: np.ndarray, lam: float | None = None, k: int | None = None, solver: str = "SCS") -> np.ndarray:
    """The relaxation's optimal X (n x n), penalty form (lam) or fixed-k form (k)."""
    n = U_std.shape[0]
    X = cp.Variable((n, n), symmetric=True)
    cons = [X >> 0, X >= 0, X @ np.ones(n) == np.ones(n)]
    if k is not None:
        cons.append(cp.trace(X) == k)
        objective = cp.Maximize(cp.trace(U_std @ X))
    else:
        objective = cp.Maximize(cp.trace(U_std @ X) - float(lam) * cp.trace(X))  # type: ignore[arg-type]
    problem = cp.Problem(objective, cons)
    try:
        if solver == "SCS":
            problem.solve(solver=cp.SCS, eps=1e-6, max_iters=20_000)
        else:
            problem.solve(solver=getattr(cp, solver))
    except cp.SolverError as exc:
        raise PolicyGradExError(f"SDP solver {solver} failed ({exc}); try --solver CLARABEL or SCS") from None
    if X.value is None:
        raise PolicyGradExError(f"SDP solver {solver} returned no solution (status {problem.status})")
    return np.asarray(X.value)


def round_solution(X: np.ndarray, k: int | None = None) -> np.ndarray:
    """Group labels from X: average-linkage clustering of X's rows cut at k (default round(tr X)) groups."""
    n = X.shape[0]
    if k is None:
        k = int(np.clip(np.rint(np.trace(X)), 1, n))
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    if k >= n:
        return np.arange(n, dtype=np.int64)
    Z = linkage(X, method="average", metric="euclidean")
    return canonical(cut_tree(Z, n_clusters=k).reshape(-1))


def silhouette(U_std: np.ndarray, labels: np.ndarray) -> float | None:
    """Silhouette of a partition under the dissimilarity max(U) - U (None for 1 or n groups, where it is undefined)."""
    k = int(labels.max() + 1)
    if k < 2 or k >= len(labels):
        return None
    D = U_std.max() - U_std
    np.fill_diagonal(D, 0.0)
    return float(silhouette_score(D, labels, metric="precomputed"))


def refine(U_std: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Local improvement after rounding: move single tasks between groups while <U, X_partition> increases.

    Keeps the number of groups (no group is emptied); deterministic (first improving move in task order); a
    partition that is already locally optimal, such as exact planted blocks, is returned unchanged."""
    labels = canonical(labels).copy()
    k = int(labels.max() + 1)
    best = partition_objective(U_std, labels)
    improved = True
    while improved:
        improved = False
        for i in range(len(labels)):
            if (labels == labels[i]).sum() == 1:
                continue
            for g in range(k):
                if g == labels[i]:
                    continue
                trial = labels.copy()
                trial[i] = g
                val = partition_objective(U_std, trial)
                if val > best + 1e-12:
                    labels, best, improved = trial, val, True
                    break
    return canonical(labels)


def lambda_grid(U_std: np.ndarray, size: int) -> np.ndarray:
    """Log-spaced lambda from 0.01 to n * max|U_std| (above which one group is always optimal-ish)."""
    n = U_std.shape[0]
    hi = max(1.0, n * float(np.abs(U_std).max()))
    return np.geomspace(0.01, hi, size)


@dataclass
class Clustering:
    labels: np.ndarray
    k: int
    lam: float | None
    method: str
    X: np.ndarray | None = None
    grid: list[dict] = field(default_factory=list)
    """For the lambda grid: one row per lambda with the rounded k and labels."""
    check: dict | None = None
    """Exhaustive-search check (n <= 12): the optimal partition with the same k, and whether SDP groups match."""


def cluster(
    U: np.ndarray,
    k: int | None = None,
    lam: float | None = None,
    solver: str = "SCS",
    method: str = "sdp",
    grid_size: int = 25,
    exhaustive_check: bool = True,
    min_silhouette: float = 0.25,
) -> Clustering:
    """Group tasks from the affinity U. k and lam are exclusive; with neither, lambda is chosen on a grid."""
    n = U.shape[0]
    if k is not None and not 1 <= k <= n:
        raise PolicyGradExError(f"--k {k} is out of range: it must be between 1 and the number of tasks ({n})")
    if k is not None and lam is not None:
        raise PolicyGradExError("give either --k (fixed number of groups) or --lam (trace penalty), not both")
    if lam is not None and lam < 0:
        raise PolicyGradExError(f"--lam must be >= 0, got {lam}")
    if not np.isfinite(U).all():
        raise PolicyGradExError("the affinity matrix has non-finite entries")
    U_std = standardize(U)
    if method == "exhaustive":
        labels = exhaustive_partition(U_std, k=k, lam=lam if k is None else None)
        return Clustering(labels, int(labels.max() + 1), lam, "exhaustive")
    if method != "sdp":
        raise PolicyGradExError(f"unknown clustering method {method!r}; choose 'sdp' or 'exhaustive'")
    grid_rows: list[dict] = []
    if k is None and not U_std.any():  # constant affinity: no structure, one group
        result = Clustering(np.zeros(n, dtype=np.int64), 1, lam, "sdp", X=np.full((n, n), 1.0 / n))
    elif k is not None:
        X = solve_sdp(U_std, k=k, solver=solver)
        result = Clustering(refine(U_std, round_solution(X, k)), k, None, "sdp", X=X)
    elif lam is not None:
        X = solve_sdp(U_std, lam=lam, solver=solver)
        labels = refine(U_std, round_solution(X))
        result = Clustering(labels, int(labels.max() + 1), lam, "sdp", X=X)
    else:
        solutions = []
        for g in lambda_grid(U_std, grid_size):
            X = solve_sdp(U_std, lam=float(g), solver=solver)
            labels = refine(U_std, round_solution(X))
            solutions.append((float(g), X, labels))
            grid_rows.append({"lam": float(g), "k": int(labels.max() + 1), "trace": float(np.trace(X)),
                              "labels": labels.tolist()})
        # every distinct partition on the lambda path is a candidate; keep the best silhouette, or one group
        # when no candidate reaches min_silhouette (no substantial structure)
        best_score, best_i = -np.inf, None
        for i, (_, _, labels) in enumerate(solutions):
            row_score = silhouette(U_std, labels)
            grid_rows[i]["silhouette"] = row_score
            if row_score is not None and row_score > best_score + 1e-9:
                best_score, best_i = row_score, i
        if best_i is None or best_score < min_silhouette:
            g, X, labels = float(lambda_grid(U_std, grid_size)[-1]), np.full((n, n), 1.0 / n), np.zeros(n, dtype=np.int64)
        else:
            g, X, labels = solutions[best_i]
        result = Clustering(labels, int(labels.max() + 1), g, "sdp", X=X)
    result.grid = grid_rows
    if exhaustive_check and n <= EXHAUSTIVE_MAX_N:
        opt = exhaustive_partition(U_std, k=result.k)
        result.check = {
            "k": result.k,
            "optimal_labels": opt.tolist(),
            "optimal_objective": partition_objective(U_std, opt),
            "sdp_objective": partition_objective(U_std, result.labels),
            "sdp_is_optimal": bool(np.isclose(partition_objective(U_std, opt), partition_objective(U_std, result.labels))),
        }
    return result


def _restricted_growth_strings(n: int, kmax: int) -> np.ndarray:
    """All partitions of n items into at most kmax groups, as canonical label rows (M x n, int8)."""
    rows = np.zeros((1, 1), dtype=np.int8)
    top = np.zeros(1, dtype=np.int8)
    for _ in range(1, n):
        new_rows, new_top = [], []
        for v in range(kmax):
            ok = v <= top + 1
            if ok.any():
                r = rows[ok]
                new_rows.append(np.hstack([r, np.full((len(r), 1), v, dtype=np.int8)]))
                new_top.append(np.maximum(top[ok], v).astype(np.int8))
        rows, top = np.vstack(new_rows), np.concatenate(new_top)
    return rows


def exhaustive_partition(U: np.ndarray, k: int | None = None, lam: float | None = None) -> np.ndarray:
    """The exact best partition: max <U, X_partition> with exactly k groups, or max <U, X> - lam * k."""
    n = U.shape[0]
    if n > EXHAUSTIVE_MAX_N:
        raise PolicyGradExError(f"exhaustive search is limited to n <= {EXHAUSTIVE_MAX_N} tasks (got {n}); use the SDP")
    if k is None and lam is None:
        raise PolicyGradExError("exhaustive search needs --k or --lam")
    rows = _restricted_growth_strings(n, k if k is not None else n)
    ks = rows.max(1).astype(np.int64) + 1
    if k is not None:
        rows, ks = rows[ks == k], ks[ks == k]
    best_val, best_row = -np.inf, rows[0]
    kmax = int(ks.max())
    for lo in range(0, len(rows), 20_000):
        chunk = rows[lo : lo + 20_000].astype(np.int64)
        onehot = np.eye(kmax)[chunk]  # (M, n, K)
        sizes = onehot.sum(1)
        within = np.einsum("mik,ij,mjk->mk", onehot, U, onehot, optimize=True)
        vals = (within / np.maximum(sizes, 1)).sum(1)
        if lam is not None:
            vals = vals - lam * ks[lo : lo + 20_000]
        i = int(np.argmax(vals))
        if vals[i] > best_val + 1e-12:
            best_val, best_row = vals[i], chunk[i]
    return canonical(best_row)
