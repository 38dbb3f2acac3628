"""Stage 5: group the tasks by the trace-regularised SDP relaxation (Awasthi et al. 2015; Peng and Wei's k-means SDP).

    maximize <U, X> - lambda tr(X)   s.t.  X symmetric PSD, X >= 0 entrywise, X 1 = 1        (penalty form)
    maximize <U, X>                  s.t.  the same and tr(X) = k                           (fixed-k form)

For a partition, X = sum_G 1_G 1_G^T / |G| is feasible with tr(X) = k, so the program relaxes "maximise the
size-weighted within-group affinity". Adding a constant to U changes <U, X> by a constant (sum X = n), but
scaling U rescales lambda's effect, so U is standardised first (:func:`standardize`: additive per-task effects
removed by least squares, diagonal zeroed, std 1 off the diagonal): lambda is then in standard deviations of the pairwise interaction and comparable across runs.

Finding the partition. The relaxation is not always tight (on the cartpole demo X has rank >= 5), and a rounding
that never looks at the objective can miss the best partition. So:

- ``exact`` (default for n <= ``EXACT_MAX_N`` = 12 via ``auto``): every partition is scored once
  (:func:`best_partitions`) and the best one for each k is kept; the SDP is still solved once, for the
  relaxation gap.
- ``sdp`` (default above 12): several roundings of X (average linkage on X's rows, k-means on X's rows, k-means on
  its spectral embedding, each deterministic), each improved by a local search with single-task moves and pair
  swaps using incremental gains (:func:`local_search`), keeping the best objective.

Either way the result reports the relaxation gap <U, X*> - <U, X_partition> (>= 0 up to solver accuracy): a gap of 0
certifies that no partition with that k does better, without enumerating them.

Without k or lambda, lambda runs over a log-spaced grid; each distinct rounded partition on that path is scored by its
silhouette under the dissimilarity max(U) - U, and the best is kept, unless no partition reaches ``min_silhouette``
(0.25, Kaufman and Rousseeuw's "no substantial structure" line), in which case all tasks form one group. (Keeping
the partition that persists longest on the grid was tried first: it depends on the grid's spacing and picked
fractional low-lambda solutions on planted blocks.)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np
from scipy.cluster.hierarchy import cut_tree, linkage
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import silhouette_score

from policygradex.common.errors import PolicyGradExError
from policygradex.pipeline.partitions import (
    EXACT_MAX_N,
    best_partitions,
    canonical,
    local_search,
    partition_objective,
)


def additive_effects(U: np.ndarray) -> tuple[float, np.ndarray]:
    """Least-squares fit of U_ij = mu + a_i + a_j over the off-diagonal entries (sum a = 0): (mu, a).

    Closed form: with r_i the off-diagonal row sums, mu = sum r / (n (n - 1)) and a_i = (r_i - (n - 1) mu) / (n - 2)
    (n >= 3); the residual then has zero row sums off the diagonal."""
    n = U.shape[0]
    off = ~np.eye(n, dtype=bool)
    r = np.where(off, U, 0.0).sum(1)
    mu = float(r.sum() / (n * (n - 1)))
    return mu, (r - (n - 1) * mu) / (n - 2)


def standardize(U: np.ndarray) -> np.ndarray:
    """Interaction part of U in standard deviations: symmetrise, remove additive per-task effects exactly, zero the
    diagonal, scale to std 1 off the diagonal.

    Additive effects mu + a_i + a_j (a task whose subsets fit well with every partner, e.g. because its own gradient
    is large or its loss at theta_star is high) say nothing about which tasks belong together, but they are not
    harmless: with the diagonal zeroed, <a 1^T + 1 a^T - 2 diag(a), X> = 2 sum a - 2 sum_i a_i X_ii, so a task with
    a large a_i is pulled into a large group and one with a small a_i pushed into a singleton. They are removed by
    the least-squares fit of :func:`additive_effects` on the off-diagonal entries. (Double-centring the masked
    matrix, used before, leaves (a_i + a_j) / (n - 1): on the surrogate's U, whose additive part is orders of
    magnitude above its pairwise part, that residual decided the groups, e.g. {8 tasks}, {1}, {1} on the planted
    family.) The diagonal U_ii of eq. 5 is itself a per-task effect and is set to 0, so a singleton scores 0.
    Returns all zeros when U has no interaction structure (a constant or purely additive U, or n < 3)."""
    U = np.asarray(U, dtype=np.float64)
    U = (U + U.T) / 2
    n = U.shape[0]
    if n < 3:
        return np.zeros_like(U)
    off = ~np.eye(n, dtype=bool)
    mu, a = additive_effects(U)
    C = U - mu - a[:, None] - a[None, :]
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


def rounding_candidates(X: np.ndarray, k: int, seed: int = 0, restarts: int = 10) -> list[np.ndarray]:
    """Partitions into exactly k groups read off X in several ways: average linkage on X's rows, k-means on X's rows,
    and k-means on the spectral embedding of X (top-k eigenvectors scaled by sqrt(eigenvalue)); every one of
    ``restarts`` seeded k-means runs is a candidate of its own (the one with the lowest k-means inertia need not
    round best for <U, X>). Duplicates and candidates with fewer than k groups are dropped."""
    n = X.shape[0]
    if k == 1:
        return [np.zeros(n, dtype=np.int64)]
    if k >= n:
        return [np.arange(n, dtype=np.int64)]
    Xs = (X + X.T) / 2
    vals, vecs = np.linalg.eigh(Xs)
    embed = vecs[:, -k:] * np.sqrt(np.clip(vals[-k:], 0.0, None))
    out = [round_solution(Xs, k)]
    for points in (Xs, embed):
        for r in range(restarts):
            with warnings.catch_warnings():  # duplicate rows (an integral X) give fewer distinct clusters: dropped below
                warnings.simplefilter("ignore", ConvergenceWarning)
                out.append(canonical(KMeans(n_clusters=k, n_init=1, random_state=seed + r).fit(points).labels_))
    unique = {tuple(c): c for c in out if int(c.max()) + 1 == k}
    return list(unique.values())


def silhouette(U_std: np.ndarray, labels: np.ndarray) -> float | None:
    """Silhouette of a partition under the dissimilarity max(U) - U (None for 1 or n groups, where it is undefined)."""
    k = int(labels.max() + 1)
    if k < 2 or k >= len(labels):
        return None
    D = U_std.max() - U_std
    np.fill_diagonal(D, 0.0)
    return float(silhouette_score(D, labels, metric="precomputed"))


def best_rounding(U_std: np.ndarray, X: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """The best partition into k groups among X's rounding candidates, each improved by :func:`local_search`."""
    best, best_val = None, -np.inf
    for cand in rounding_candidates(X, k, seed):
        labels = local_search(U_std, cand)
        val = partition_objective(U_std, labels)
        if val > best_val + 1e-12:
            best, best_val = labels, val
    assert best is not None
    return best


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
    """``exact`` (enumeration) or ``sdp`` (relaxation + rounding + local search): how the labels were found."""
    X: np.ndarray | None = None
    grid: list[dict] = field(default_factory=list)
    """For the lambda grid: one row per lambda with the chosen k and labels."""
    check: dict | None = None
    """Exhaustive-search check (n <= 12) of SDP-found groups: the optimal partition with the same k, and whether
    the SDP groups match."""
    objective: float = float("nan")
    """<U_std, X_partition> of the returned groups."""
    relaxation: dict | None = None
    """The fixed-k SDP's value <U_std, X*> at the returned k, an upper bound on every partition's objective, and
    the gap to the returned partition (0 up to solver accuracy: provably the best partition with that k)."""


def _validate(U: np.ndarray, k: int | None, lam: float | None, method: str) -> None:
    n = U.shape[0]
    if k is not None and not 1 <= k <= n:
        raise PolicyGradExError(f"--k {k} is out of range: it must be between 1 and the number of tasks ({n})")
    if k is not None and lam is not None:
        raise PolicyGradExError("give either --k (fixed number of groups) or --lam (trace penalty), not both")
    if lam is not None and not (np.isfinite(lam) and lam >= 0):
        raise PolicyGradExError(f"--lam must be a finite number >= 0, got {lam}")
    if not np.isfinite(U).all():
        raise PolicyGradExError("the affinity matrix has non-finite entries")
    if method not in ("auto", "sdp", "exhaustive", "exact"):
        raise PolicyGradExError(f"unknown clustering method {method!r}; choose 'auto', 'exact' or 'sdp'")
    if method in ("exhaustive", "exact") and n > EXACT_MAX_N:
        raise PolicyGradExError(f"exhaustive search is limited to n <= {EXACT_MAX_N} tasks (got {n}); use the SDP")


def cluster(
    U: np.ndarray,
    k: int | None = None,
    lam: float | None = None,
    solver: str = "SCS",
    method: str = "auto",
    grid_size: int = 25,
    exhaustive_check: bool = True,
    min_silhouette: float = 0.25,
    relaxation_gap: bool = True,
) -> Clustering:
    """Group tasks from the affinity U. k and lam are exclusive; with neither, lambda is chosen on a grid.

    ``method``: ``auto`` (exact for n <= 12, else sdp), ``exact`` (``exhaustive``) or ``sdp``. ``relaxation_gap``
    solves the fixed-k SDP at the returned k to bound the partition's distance from the optimum (skipped for k = 1)."""
    n = U.shape[0]
    _validate(U, k, lam, method)
    U_std = standardize(U)
    exact = method in ("exact", "exhaustive") or (method == "auto" and n <= EXACT_MAX_N)
    # k -> (objective, labels): every k for lambda, only the given k otherwise (S(12, 3) = 86k partitions, not 4.2M)
    table = (best_partitions(U_std, kmax=k, only_k=True) if k is not None else best_partitions(U_std)) if exact else None

    def penalised(lam_: float) -> tuple[np.ndarray, np.ndarray | None]:
        """The best partition for <U, X> - lam * k, and the penalty-form X when the SDP was solved."""
        if table is not None:
            kk = max(table, key=lambda c: table[c][0] - lam_ * c)
            return table[kk][1], None
        X = solve_sdp(U_std, lam=lam_, solver=solver)
        k0 = int(np.clip(np.rint(np.trace(X)), 1, n))
        cands = [best_rounding(U_std, X, c) for c in sorted({max(1, k0 - 1), k0, min(n, k0 + 1)})]
        vals = [partition_objective(U_std, c) - lam_ * (int(c.max()) + 1) for c in cands]
        return cands[int(np.argmax(vals))], X

    grid_rows: list[dict] = []
    X: np.ndarray | None = None
    chosen_lam = lam
    if k is None and not U_std.any():  # constant affinity: no structure, one group
        labels, X = np.zeros(n, dtype=np.int64), np.full((n, n), 1.0 / n)
    elif k is not None:
        if table is not None:
            labels = table[k][1]
        else:
            X = solve_sdp(U_std, k=k, solver=solver)
            labels = best_rounding(U_std, X, k)
    elif lam is not None:
        labels, X = penalised(lam)
    else:
        solutions = []
        for g in lambda_grid(U_std, grid_size):
            labels_g, X_g = penalised(float(g))
            solutions.append((float(g), X_g, labels_g))
            grid_rows.append({"lam": float(g), "k": int(labels_g.max() + 1), "labels": labels_g.tolist()}
                             | ({"trace": float(np.trace(X_g))} if X_g is not None else {}))
        # every distinct partition on the lambda path is a candidate; keep the best silhouette, or one group
        # when no candidate reaches min_silhouette (no substantial structure)
        best_score, best_i = -np.inf, None
        for i, (_, _, labels_g) in enumerate(solutions):
            row_score = silhouette(U_std, labels_g)
            grid_rows[i]["silhouette"] = row_score
            if row_score is not None and row_score > best_score + 1e-9:
                best_score, best_i = row_score, i
        if best_i is None or best_score < min_silhouette:
            chosen_lam, X, labels = float(lambda_grid(U_std, grid_size)[-1]), np.full((n, n), 1.0 / n), np.zeros(n, dtype=np.int64)
        else:
            chosen_lam, X, labels = solutions[best_i]
    labels = canonical(labels)
    k_out = int(labels.max() + 1)
    result = Clustering(labels, k_out, chosen_lam, "exact" if table is not None else "sdp", X=X, grid=grid_rows,
                        objective=partition_objective(U_std, labels))
    if relaxation_gap and 1 < k_out < n and U_std.any():
        X_k = X if (X is not None and k is not None) else solve_sdp(U_std, k=k_out, solver=solver)
        bound = float(np.sum(U_std * X_k))
        result.relaxation = {"k": k_out, "sdp_value": bound, "partition_value": result.objective,
                             "gap": bound - result.objective, "solver": solver}
        if result.X is None:
            result.X = X_k
    if exhaustive_check and table is None and n <= EXACT_MAX_N:
        opt = best_partitions(U_std, kmax=k_out, only_k=True)[k_out][1]
        result.check = {
            "k": k_out,
            "optimal_labels": opt.tolist(),
            "optimal_objective": partition_objective(U_std, opt),
            "sdp_objective": result.objective,
            "sdp_is_optimal": bool(np.isclose(partition_objective(U_std, opt), result.objective)),
        }
    return result
