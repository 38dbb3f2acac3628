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
- ``sdp`` (default for 12 < n <= ``SDP_MAX_N`` via ``auto``): several roundings of X (average linkage on X's rows,
  k-means on X's rows, k-means on its spectral embedding, each deterministic), each improved by a local search with
  single-task moves and pair swaps (:func:`local_search`), keeping the best objective. The SDP costs hours and tens
  of GB at n = 1,000.
- ``fast`` (default above ``SDP_MAX_N``): no SDP. Roundings of the spectral embedding of U (pivoted QR and seeded
  k-means), each improved by moves, swaps and merge-plus-split steps from incrementally kept sums
  (:func:`fast_partition`), keeping the best objective; O(n^3) for one eigendecomposition, then about O(n k) per
  move and O(n^2) per swap round.

The result reports an upper bound on every partition's objective at the returned k and the gap to it (>= 0 up to
solver accuracy): the fixed-k SDP's value <U, X*> on the exact and sdp paths, whose gap of 0 certifies that no
partition with that k does better, without enumerating them; the spectral (Fan) bound under fast
(:meth:`Spectrum.bound`), which is cheaper and looser, so a gap there does not mean a better partition exists.

Without k or lambda, lambda runs over a log-spaced grid; each distinct rounded partition on that path is scored by its
silhouette under the dissimilarity max(U) - U, and the best is kept, unless no partition reaches ``min_silhouette``
(0.25, Kaufman and Rousseeuw's "no substantial structure" line), in which case all tasks form one group. (Keeping
the partition that persists longest on the grid was tried first: it depends on the grid's spacing and picked
fractional low-lambda solutions on planted blocks.)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np
import scipy.linalg
import scipy.optimize
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
    merge_split_search,
    partition_objective,
)

SDP_MAX_N = 100
"""``auto`` uses the SDP path up to this many tasks and ``fast`` above (exact enumeration up to EXACT_MAX_N).

Why 100 (results/bench_clustering.md, k = n / 10): on planted blocks with noise fast's objective equals the SDP
path's at every n measured (20-300), in a small fraction of its time; on structureless U the SDP's roundings were
still up to 2.5% better at n = 50-100, while at n = 200 fast was 0.3-1.3% better. Up to 100 the SDP stays cheap
enough to rerun on every bootstrap resample, and its bound is tight (gap ~1e-9 on planted blocks, against ~20% for
the spectral bound); above, its cost grows about as n^3 for a partition no better than fast's."""
FAST_RESTARTS = 5
"""Seeded k-means roundings of the spectral embedding that ``fast`` polishes (random_state = seed + r)."""
BM_RESTARTS = 1
"""Burer-Monteiro solutions whose roundings ``fast`` also polishes (:func:`burer_monteiro`), when one partition is
asked for without a warm start."""
BM_OUTER, BM_INNER = 12, 300
"""Augmented-Lagrangian rounds and L-BFGS-B iterations per round of :func:`burer_monteiro`."""


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


def combine(Us: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """The affinity of several expansion points (``--expansion-points``): the mean of their :func:`standardize`-d
    U's, so that each point weighs the same whatever the scale of its f^ (one point: its U as it is), or with
    ``weights`` (one per U, >= 0, not all 0; ``--point-weights reliability``) their weighted mean. O(P n^2) for P
    points, like the U's themselves."""
    if len(Us) == 1:
        return Us[0]
    if weights is None:
        return np.mean([standardize(U) for U in Us], axis=0)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(Us),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"combine: {len(Us)} U's need as many weights >= 0, not all 0; got {list(weights)}")
    return np.einsum("p,pij->ij", w / w.sum(), np.stack([standardize(U) for U in Us]))


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


@dataclass(frozen=True)
class Spectrum:
    """Eigenpairs of P U P on the complement of the all-ones vector 1 (P = I - 11^T / n), largest first.

    ``values`` (n - 1,), ``vectors`` (n, n - 1) with orthonormal columns orthogonal to 1, and ``mean`` = 1^T U 1 / n.
    """

    values: np.ndarray
    vectors: np.ndarray
    mean: float

    def bound(self, k: int) -> float:
        """Spectral (Fan) upper bound on <U, X> for every partition into k groups, and for the fixed-k SDP's value.

        A partition's X = sum_G 1_G 1_G^T / |G| is the orthogonal projection onto the span of its k group indicators,
        which holds 1, so X = 11^T / n + Y with Y the projection onto a (k - 1)-dimensional subspace orthogonal to 1:
        <U, X> = 1^T U 1 / n + <P U P, Y>, and by Ky Fan's maximum principle <P U P, Y> over 0 <= Y <= I, tr Y = k - 1,
        Y 1 = 0 is at most the sum of the k - 1 largest eigenvalues of P U P on the complement of 1. The SDP's X
        (PSD, nonnegative, X 1 = 1, tr X = k) has 1 as an eigenvector with eigenvalue 1 and spectral radius 1 (its
        rows are probability vectors), so its Y = X - 11^T / n satisfies the same constraints: the bound is also
        >= the SDP value."""
        return self.mean + float(self.values[: k - 1].sum())

    def embedding(self, k: int) -> np.ndarray:
        """The top-k eigenvectors scaled by sqrt(max(eigenvalue, 0)) (n x k): rows are the tasks' coordinates."""
        return self.vectors[:, :k] * np.sqrt(np.clip(self.values[:k], 0.0, None))

    def k_at(self, lam: float) -> int:
        """1 + the number of eigenvalues above lam: the k maximising the bound less lam k (the penalty form's
        spectral analogue)."""
        return 1 + int(np.sum(self.values > lam))


def spectrum(U: np.ndarray) -> Spectrum:
    """:class:`Spectrum` of U (symmetrised). The direction 1 is moved to the bottom of the spectrum (U is deflated by
    more than its spectral radius along it) and dropped, so the values are exactly those on its complement.
    Time O(n^3) (one dense symmetric eigendecomposition), memory O(n^2)."""
    U = np.asarray(U, dtype=np.float64)
    U = (U + U.T) / 2
    n = U.shape[0]
    row = U.mean(1)
    mean = float(row.sum())
    A = U - row[:, None] - row[None, :] + mean / n  # P U P
    shift = 1.0 + float(np.abs(A).sum(1).max())  # > spectral radius of P U P
    vals, vecs = np.linalg.eigh(A - shift / n)
    return Spectrum(values=vals[::-1][: n - 1].copy(), vectors=vecs[:, ::-1][:, : n - 1].copy(), mean=mean)


def _fill_groups(labels: np.ndarray, k: int) -> np.ndarray:
    """Labels with exactly k non-empty groups: while fewer, the last task of the largest group starts a new one."""
    labels = canonical(labels)
    while int(labels.max()) + 1 < k:
        sizes = np.bincount(labels)
        big = int(np.argmax(sizes))
        labels[np.flatnonzero(labels == big)[-1]] = int(labels.max()) + 1
        labels = canonical(labels)
    return labels


def pivoted_qr_labels(points: np.ndarray, k: int) -> np.ndarray:
    """Deterministic rounding of an n x d embedding into at most k groups (Damle, Minden and Ying 2019): rows
    normalised to unit length, k representative rows chosen by QR with column pivoting of the transpose, each task
    assigned to the representative it is most aligned with. Time O(n d k)."""
    norms = np.linalg.norm(points, axis=1, keepdims=True)
    unit = points / np.where(norms > 0, norms, 1.0)
    _, _, pivots = scipy.linalg.qr(unit.T, mode="economic", pivoting=True)
    return canonical(np.argmax(np.abs(unit @ unit[pivots[:k]].T), axis=1))


def burer_monteiro(U_std: np.ndarray, k: int, start: np.ndarray, seed: int = 0, outer: int = BM_OUTER,
                   inner: int = BM_INNER) -> np.ndarray:
    """A low-rank nonnegative solution of the fixed-k SDP: V >= 0 (n x k) approximately maximising <U_std, V V^T>
    subject to V V^T 1 = 1 and tr(V V^T) = |V|_F^2 = k (Burer and Monteiro's factorisation; V >= 0 makes X = V V^T
    entrywise nonnegative), by an augmented Lagrangian on the two constraints with L-BFGS-B (bounds V >= 0) for the
    inner problems; the penalty doubles each of at most ``outer`` rounds, stopping once the constraints hold to 1e-4.

    Starts from ``start``'s partition, V = H / sqrt(|G|) (feasible), mixed 70/30 with seeded uniform noise so that it
    can leave that point. The solution is a local optimum, not the SDP's: with rank k it stays close to a partition,
    and its row-wise argmax is a rounding candidate. Deterministic. Time O(n^2 k) per inner iteration (at most
    outer x inner of them), memory O(n k)."""
    n = U_std.shape[0]
    rng = np.random.default_rng(seed)
    H = np.eye(k)[canonical(start)]
    v0 = 0.7 * H / np.sqrt(H.sum(0)) + 0.3 * rng.random((n, k)) / np.sqrt(n)
    y, z, sigma = np.zeros(n), 0.0, 1.0

    def lagrangian(v: np.ndarray) -> tuple[float, np.ndarray]:
        """Minus the objective plus the multiplier and penalty terms on c = V V^T 1 - 1 and t = |V|^2 - k; gradient."""
        V = v.reshape(n, k)
        w = V.sum(0)
        c, t = V @ w - 1.0, float(np.sum(V * V)) - k
        UV = U_std @ V
        value = -float(np.sum(UV * V)) + y @ c + z * t + sigma / 2 * (c @ c + t * t)
        yy = y + sigma * c
        grad = -2 * UV + np.outer(yy, w) + (V.T @ yy)[None, :] + 2 * (z + sigma * t) * V
        return value, grad.ravel()

    v = v0.ravel()
    for _ in range(outer):
        v = scipy.optimize.minimize(lagrangian, v, jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * v.size,
                                    options={"maxiter": inner}).x
        V = v.reshape(n, k)
        c, t = V @ V.sum(0) - 1.0, float(np.sum(V * V)) - k
        y, z, sigma = y + sigma * c, z + sigma * t, 2 * sigma
        if np.abs(c).max() < 1e-4 and abs(t) < 1e-4:
            break
    return v.reshape(n, k)


def fast_partition(U_std: np.ndarray, k: int, init: np.ndarray | None = None, spec: Spectrum | None = None,
                   restarts: int = FAST_RESTARTS, bm_restarts: int = BM_RESTARTS, seed: int = 0) -> np.ndarray:
    """A partition into exactly k groups: the best, by <U_std, X_partition>, of these starts, each polished by
    :func:`merge_split_search` (moves, swaps, and merge-plus-split steps): ``init`` (if given), the pivoted-QR
    rounding of the spectral embedding (:func:`pivoted_qr_labels`), ``restarts`` seeded k-means roundings of it
    (n_init=1, random_state = seed + r); then ``bm_restarts`` roundings of :func:`burer_monteiro` solutions, the
    first started from the best partition so far, the others from seeded random partitions. A start with fewer
    than k groups is refilled (:func:`_fill_groups`).

    The Burer-Monteiro starts matter on weakly structured U, where the spectral embedding says little (+5-7% objective
    on random U at n = 100-1,000, results/bench_clustering.md), not on clear blocks (no change); at O(n^2 k) per
    L-BFGS-B iteration they cost more than everything else here at n = 1,000.

    Deterministic given ``seed``; ties go to the first start (``init`` first), so a start that nothing improves and
    no other start beats is returned as it is. Time: the eigendecomposition O(n^3) (skipped when ``spec`` is given),
    k-means O(n k^2) per iteration, the local search O(n k) per move, O(n^2) per swap round and per
    merge-plus-split round. Memory O(n^2)."""
    n = U_std.shape[0]
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    if k >= n:
        return np.arange(n, dtype=np.int64)
    points = (spec or spectrum(U_std)).embedding(k)
    starts = [] if init is None else [canonical(init)]
    starts.append(_fill_groups(pivoted_qr_labels(points, k), k))
    for r in range(restarts):
        with warnings.catch_warnings():  # repeated rows give fewer distinct clusters: refilled by _fill_groups
            warnings.simplefilter("ignore", ConvergenceWarning)
            starts.append(_fill_groups(KMeans(n_clusters=k, n_init=1, random_state=seed + r).fit(points).labels_, k))
    best, best_val, seen = np.zeros(n, dtype=np.int64), -np.inf, set()

    def consider(start: np.ndarray) -> None:
        nonlocal best, best_val
        if tuple(start) in seen:
            return
        seen.add(tuple(start))
        labels = merge_split_search(U_std, start)
        val = partition_objective(U_std, labels)
        if val > best_val + 1e-12:
            best, best_val = labels, val

    for start in starts:
        consider(start)
    rng = np.random.default_rng(seed)
    for b in range(bm_restarts):
        origin = best if b == 0 else canonical(np.concatenate([np.arange(k), rng.integers(0, k, n - k)]))
        V = burer_monteiro(U_std, k, origin, seed=seed + b)
        consider(_fill_groups(np.argmax(V, axis=1), k))
    return best


def silhouette(U_std: np.ndarray, labels: np.ndarray) -> float | None:
    """Silhouette of a partition under the dissimilarity max(U) - U (None for 1 or n groups, where it is undefined)."""
    k = int(labels.max() + 1)
    if k < 2 or k >= len(labels):
        return None
    D = U_std.max() - U_std
    np.fill_diagonal(D, 0.0)
    return float(silhouette_score(D, labels, metric="precomputed"))


def best_rounding(U_std: np.ndarray, X: np.ndarray, k: int, seed: int = 0,
                  init: np.ndarray | None = None) -> np.ndarray:
    """The best partition into k groups among ``init`` (if given, first) and X's rounding candidates, each improved
    by :func:`local_search`."""
    best, best_val = None, -np.inf
    cands = rounding_candidates(X, k, seed)
    for cand in ([canonical(init)] if init is not None else []) + cands:
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
    """``exact`` (enumeration), ``sdp`` (relaxation + rounding + local search) or ``fast`` (spectral embedding +
    k-means + incremental local search): how the labels were found."""
    X: np.ndarray | None = None
    """The SDP's X (penalty form for a given lambda, else fixed-k) where one was solved; None under ``fast``."""
    grid: list[dict] = field(default_factory=list)
    """For the lambda grid: one row per lambda with the chosen k and labels."""
    check: dict | None = None
    """Exhaustive-search check (n <= 12) of SDP- or fast-found groups: the optimal partition with the same k, and
    whether the groups found match."""
    objective: float = float("nan")
    """<U_std, X_partition> of the returned groups."""
    relaxation: dict | None = None
    """An upper bound on every partition's objective at the returned k, under ``sdp_value``, and the gap to the
    returned partition (a gap of 0, up to solver accuracy, proves it the best partition with that k). ``bound`` says
    which:
    ``sdp`` (the fixed-k SDP's value <U_std, X*>) or ``spectral`` (:meth:`Spectrum.bound`, looser: a positive gap
    need not mean a better partition exists)."""


METHODS = ("auto", "exact", "sdp", "exhaustive", "fast")


def _validate(U: np.ndarray, k: int | None, lam: float | None, method: str, init: np.ndarray | None) -> None:
    n = U.shape[0]
    if k is not None and not 1 <= k <= n:
        raise PolicyGradExError(f"--k {k} is out of range: it must be between 1 and the number of tasks ({n})")
    if k is not None and lam is not None:
        raise PolicyGradExError("give either --k (fixed number of groups) or --lam (trace penalty), not both")
    if lam is not None and not (np.isfinite(lam) and lam >= 0):
        raise PolicyGradExError(f"--lam must be a finite number >= 0, got {lam}")
    if not np.isfinite(U).all():
        raise PolicyGradExError("the affinity matrix has non-finite entries")
    if method not in METHODS:
        raise PolicyGradExError(f"unknown clustering method {method!r}; choose 'auto', 'exact', 'sdp' or 'fast'")
    if method in ("exhaustive", "exact") and n > EXACT_MAX_N:
        raise PolicyGradExError(f"exhaustive search is limited to n <= {EXACT_MAX_N} tasks (got {n}); use the SDP")
    if init is not None:
        if k is None:
            raise PolicyGradExError("an initial partition (init) needs k")
        init = np.asarray(init)
        if init.shape != (n,) or not np.issubdtype(init.dtype, np.integer) or len(np.unique(init)) != k:
            raise PolicyGradExError(f"init must be {n} integer labels with exactly k = {k} distinct values")


def resolve_method(method: str, n: int) -> str:
    """The path ``cluster`` takes: ``exact`` (also for ``exhaustive``), ``sdp`` or ``fast``. ``auto`` is exact for
    n <= EXACT_MAX_N, sdp for n <= SDP_MAX_N and fast above."""
    if method == "auto":
        return "exact" if n <= EXACT_MAX_N else ("sdp" if n <= SDP_MAX_N else "fast")
    return "exact" if method == "exhaustive" else method


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
    init: np.ndarray | None = None,
) -> Clustering:
    """Group tasks from the affinity U. k and lam are exclusive; with neither, lambda is chosen on a grid.

    ``method``: ``auto`` (exact for n <= 12, sdp for n <= SDP_MAX_N, fast above), ``exact`` (``exhaustive``),
    ``sdp`` or ``fast``. ``relaxation_gap`` bounds the partition's distance from the optimum at the returned k
    (skipped for k = 1 and k = n): by the fixed-k SDP on the exact and sdp paths, by the spectral bound under fast.
    ``init``: labels with k groups (k required) tried as one more start (sdp, fast; the exact path ignores it), e.g.
    the run's groups when reclustering a bootstrap resample. Under fast a warm start replaces the Burer-Monteiro
    start (:func:`fast_partition`), the costliest part at n = 1,000.

    Under ``fast`` with the lambda grid (or a given lambda), k(lambda) = 1 + the number of eigenvalues of P U_std P
    above lambda (:meth:`Spectrum.k_at`) and the partition is :func:`fast_partition` at that k (one per distinct k,
    without the Burer-Monteiro start on the grid); the grid's silhouette selection is the same as the SDP path's.
    Time under fast: one O(n^3) eigendecomposition, then :func:`fast_partition` per distinct k; memory O(n^2)."""
    n = U.shape[0]
    _validate(U, k, lam, method, init)
    U_std = standardize(U)
    path = resolve_method(method, n)
    # k -> (objective, labels): every k for lambda, only the given k otherwise (S(12, 3) = 86k partitions, not 4.2M)
    table = None
    if path == "exact":
        table = best_partitions(U_std, kmax=k, only_k=True) if k is not None else best_partitions(U_std)
    spec = spectrum(U_std) if path == "fast" else None
    fast_cache: dict[int, np.ndarray] = {}

    def fast_at(kk: int, bm: bool) -> np.ndarray:
        """fast_partition at kk; the Burer-Monteiro starts only for a single partition without a warm start."""
        if kk not in fast_cache:
            fast_cache[kk] = fast_partition(U_std, kk, init=init if kk == k else None, spec=spec,
                                            bm_restarts=BM_RESTARTS if bm and init is None else 0)
        return fast_cache[kk]

    def penalised(lam_: float) -> tuple[np.ndarray, np.ndarray | None]:
        """The best partition for <U, X> - lam * k, and the penalty-form X when the SDP was solved."""
        if table is not None:
            kk = max(table, key=lambda c: table[c][0] - lam_ * c)
            return table[kk][1], None
        if spec is not None:
            return fast_at(min(spec.k_at(lam_), n), bm=lam is not None), None
        X = solve_sdp(U_std, lam=lam_, solver=solver)
        k0 = int(np.clip(np.rint(np.trace(X)), 1, n))
        cands = [best_rounding(U_std, X, c) for c in sorted({max(1, k0 - 1), k0, min(n, k0 + 1)})]
        vals = [partition_objective(U_std, c) - lam_ * (int(c.max()) + 1) for c in cands]
        return cands[int(np.argmax(vals))], X

    grid_rows: list[dict] = []
    X: np.ndarray | None = None
    chosen_lam = lam
    if k is None and not U_std.any():  # constant affinity: no structure, one group
        labels = np.zeros(n, dtype=np.int64)
        X = None if path == "fast" else np.full((n, n), 1.0 / n)
    elif k is not None:
        if table is not None:
            labels = table[k][1]
        elif path == "fast":
            labels = fast_at(k, bm=True)
        else:
            X = solve_sdp(U_std, k=k, solver=solver)
            labels = best_rounding(U_std, X, k, init=init)
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
            chosen_lam, labels = float(lambda_grid(U_std, grid_size)[-1]), np.zeros(n, dtype=np.int64)
            X = None if path == "fast" else np.full((n, n), 1.0 / n)
        else:
            chosen_lam, X, labels = solutions[best_i]
    labels = canonical(labels)
    k_out = int(labels.max() + 1)
    result = Clustering(labels, k_out, chosen_lam, path, X=X, grid=grid_rows,
                        objective=partition_objective(U_std, labels))
    if relaxation_gap and 1 < k_out < n and U_std.any():
        if spec is not None:
            bound, kind, used = spec.bound(k_out), "spectral", "eigh"
        else:
            X_k = X if (X is not None and k is not None) else solve_sdp(U_std, k=k_out, solver=solver)
            bound, kind, used = float(np.sum(U_std * X_k)), "sdp", solver
            if result.X is None:
                result.X = X_k
        result.relaxation = {"k": k_out, "sdp_value": bound, "partition_value": result.objective,
                             "gap": bound - result.objective, "solver": used, "bound": kind}
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
