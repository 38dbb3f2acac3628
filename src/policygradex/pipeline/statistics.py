"""Stage 3 without O(n^2) fits: per-task sufficient statistics of the surrogate loss, and the two fast surrogates
built on them (``--surrogate newton`` and ``--surrogate closed_form``).

The surrogate of a subset S (paper eq. 3-4, :mod:`.surrogate`) is

    L_S(v) = mean_{k in S} l_k(v) + l2/2 ||v||^2,     l_k(v) = mean over task k's rows of w softplus(-y g~.v),

each task weighing the same (every task has the same number of fitting rows). softplus(-z) = log 2 - z/2 + z^2/8
+ O(z^4) (its third derivative at 0 vanishes), so around v = 0

    l_k(v) ~ c_k - b_k.v + 1/2 v^T H_k v,
    c_k = log 2 mean(w),   b_k = mean(1/2 w y g~)  (d),   H_k = mean(1/4 w g~ g~^T)  (d x d),

accurate to fourth order in the margins g~.v. With b_S, H_S the means over k in S and K_S = H_S + l2 I:

- **Newton** (:func:`newton_surrogate`): one Newton step from v = 0, v_S = K_S^-1 b_S, is the minimiser of the
  quadratic model, and f^(S) = -(c_S - b_S.v_S + 1/2 v_S^T H_S v_S) is its unregularised loss there (in sample; on
  held-out rows the same with the held-out c, b, H). What it drops: the softplus's fourth- and higher-order terms,
  i.e. how far v_S sits from 0 in margin units. One d x d Cholesky per subset, O(m d^3), no pass over the rows.
- **Closed form** (:func:`closed_form_affinity`): one shared curvature H = mean_k H_k for every subset. Then
  f^(S) is exactly quadratic in the subset's indicator,

      f^(S) = const + sum_{k in S} a_k + (1/alpha^2) sum_{i < j in S} P_ij,
      P_ij = b^e_i A b_j + b^e_j A b_i - b_i A H^e A b_j,   A = (H + l2 I)^-1,

  where (b^e, H^e) are the statistics f^ is evaluated on (in sample: b^e = b, H^e = H, so P = 2 B (A - A H A / 2)
  B^T). Averaged over all subsets holding i and j, the interaction residual of :func:`.affinity.subset_affinity`
  is a constant times P's own interaction part (its additive effects removed), so ``standardize(P)`` is the
  m -> infinity limit of the subset path's standardised U: no subsets, no subset noise. What it drops, beyond
  Newton's: the variation of the curvature between tasks (H_k - H), and the subset sampling itself.
  In the strongly regularised limit A -> I / l2 and P -> B B^T, plain gradient similarity.

Time and memory in n (d the projection dimension, N rows per task): the statistics take one pass over each task's
rows, O(n N d) for b and the replicate blocks, O(n r d^2) for the curvature from r rows per task (r = N by
default); memory O(n R d) for R replicate blocks plus O(d^2) for the shared curvature, or O(n d^2) when per-task
curvatures are kept (Newton only). The closed form is O(n d^2 + n^2 d): at n = 1,000 and d = 400 a fraction of a
second; nothing of size m or (n, N, d) is ever formed.

Replicate statistics. Each task's fitting rows are cut into R contiguous blocks in time (contiguous, because
consecutive transitions of an episode are correlated); the blocks' sums of 1/2 w y g~ let b_k be recomputed for
any reweighting of the blocks. :mod:`.confidence` resamples them (a bootstrap over transitions) and splits them
in halves (split-half reliability over transitions) without touching the features again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from policygradex.common.artifacts import load_npz, npz_holds
from policygradex.common.errors import PolicyGradExError
from policygradex.pipeline.features import FeatureSet, fit_rows

LOG2 = math.log(2.0)


# ----------------------------------------------------------------------------------------------- statistics
@dataclass
class Statistics:
    """Per-task sufficient statistics of the surrogate loss at v = 0, for the fitting rows and the held-out rows."""

    c: np.ndarray
    """(n,) c_k = log 2 mean(w) over the fitting rows: task k's loss at theta_star."""
    b: np.ndarray
    """(n, d) b_k = mean(1/2 w y g~) over the fitting rows: minus the gradient of l_k at v = 0."""
    curvature: np.ndarray
    """(d, d) shared curvature: the mean over tasks of H_k = mean(1/4 w g~ g~^T), from ``curvature_rows`` rows each."""
    block_sums: np.ndarray
    """(n, R, d) sums of 1/2 w y g~ over R contiguous blocks of each task's fitting rows (b_k = their sum / rows)."""
    block_rows: np.ndarray
    """(R,) rows per block (the same for every task)."""
    rows: int
    """Fitting rows per task."""
    curvature_rows: int
    """Rows per task the shared curvature was averaged over."""
    H: np.ndarray | None = None
    """(n, d, d) per-task H_k over all fitting rows, when kept (``per_task=True``: the Newton surrogate)."""
    held_c: np.ndarray | None = None
    """(n,) c_k over the held-out rows (None when nothing is held out)."""
    held_b: np.ndarray | None = None
    """(n, d) b_k over the held-out rows."""
    held_curvature: np.ndarray | None = None
    """(d, d) mean over tasks of H_k over the held-out rows."""
    held_H: np.ndarray | None = None
    """(n, d, d) per-task H_k over the held-out rows, when kept."""
    split_sums: np.ndarray | None = None
    """(n, 2, d) ``--baseline per_task`` under ``--store statistics``: sums of 1/2 w y g~ over the first half of
    each task's fitting rows and over the rest, with the advantages of baselines fitted apart on those halves
    (:func:`.features.split_advantages`); only the gradient signal's split-half reliability reads them."""

    @property
    def n(self) -> int:
        return self.b.shape[0]

    @property
    def d(self) -> int:
        return self.b.shape[1]

    @property
    def blocks(self) -> int:
        return self.block_rows.shape[0]

    def reweighted_b(self, weights: np.ndarray) -> np.ndarray:
        """(n, d) b_k recomputed with block r of task k counted weights[k, r] times (a resample or a half of the
        blocks): O(n R d)."""
        return np.einsum("kr,krd->kd", weights, self.block_sums) / (weights @ self.block_rows)[:, None]

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything as named arrays, for :func:`save` (None fields left out)."""
        out = {"c": self.c, "b": self.b, "curvature": self.curvature, "block_sums": self.block_sums,
               "block_rows": self.block_rows, "rows": np.asarray(self.rows), "curvature_rows": np.asarray(self.curvature_rows)}
        for name in ("H", "held_c", "held_b", "held_curvature", "held_H", "split_sums"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], where: str = "statistics") -> "Statistics":
        need = {"c", "b", "curvature", "block_sums", "block_rows", "rows", "curvature_rows"}
        if not need <= set(arrays):
            raise PolicyGradExError(f"{where} lacks {sorted(need - set(arrays))}; delete it to recompute")
        kw = {k: np.asarray(v) for k, v in arrays.items()}
        kw["rows"], kw["curvature_rows"] = int(kw["rows"]), int(kw["curvature_rows"])
        return cls(**kw)


def block_bounds(rows: int, blocks: int) -> np.ndarray:
    """(R + 1,) boundaries of R near-equal contiguous blocks of ``rows`` rows (R = min(blocks, rows))."""
    R = max(1, min(blocks, rows))
    return np.linspace(0, rows, R + 1).round().astype(np.int64)


def curvature_rows_index(rows: int, want: int | None) -> np.ndarray:
    """Indices of the rows the shared curvature uses: all, or ``want`` evenly spaced over the task's rows (spread
    over time rather than the first ones, so they sample the whole collection)."""
    if want is None or want >= rows:
        return np.arange(rows)
    return np.unique(np.linspace(0, rows - 1, max(1, want)).round().astype(np.int64))


@dataclass
class _TaskStats:
    c: float
    b: np.ndarray
    block_sums: np.ndarray
    H_sub: np.ndarray
    H: np.ndarray | None


def _task_stats(X: torch.Tensor, y: torch.Tensor, w: torch.Tensor, bounds: np.ndarray, curv_idx: np.ndarray | None,
                per_task: bool) -> _TaskStats:
    """One task's statistics from its rows X (rows, d) float32, labels y and weights w (rows,)."""
    rows = X.shape[0]
    X64 = X.to(torch.float64)
    w64 = w.to(torch.float64)
    z = 0.5 * w64 * y.to(torch.float64)
    block_sums = np.stack([(z[lo:hi] @ X64[lo:hi]).numpy() for lo, hi in zip(bounds[:-1], bounds[1:])])
    b = block_sums.sum(0) / rows
    H_all = None
    if per_task or curv_idx is None:
        H_all = ((X64 * (0.25 * w64)[:, None]).T @ X64).numpy() / rows
    if curv_idx is None:
        H_sub = H_all
    else:
        Xs, ws = X64[curv_idx], w64[curv_idx]
        H_sub = ((Xs * (0.25 * ws)[:, None]).T @ Xs).numpy() / len(curv_idx)
    assert H_sub is not None
    return _TaskStats(LOG2 * float(w64.mean()), b, block_sums, H_sub, H_all if per_task else None)


TaskRows = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""One task's (features (N, d) float32, labels (N,), weights (N,)), all its rows in time order."""


def compute_statistics(tasks: Iterable[TaskRows], n_fit: int, blocks: int = 32, curvature_rows: int | None = None,
                       per_task: bool = False) -> Statistics:
    """Statistics of the fitting rows (the first ``n_fit`` of each task) and of the held-out rest, streamed task by
    task: only one task's rows are in memory at a time. ``per_task`` keeps every task's H_k (O(n d^2) memory, for
    the Newton surrogate); otherwise only their mean."""
    c, b, sums, Hs, held = [], [], [], [], []
    curv_sum: np.ndarray | None = None
    held_curv: np.ndarray | None = None
    bounds: np.ndarray | None = None
    curv_idx: np.ndarray | None = None
    used = 0
    for X, y, w in tasks:
        N = X.shape[0]
        if not 1 <= n_fit <= N:
            raise PolicyGradExError(f"{n_fit} fitting rows asked of a task with {N} transitions")
        if bounds is None:
            bounds = block_bounds(n_fit, blocks)
            idx = curvature_rows_index(n_fit, curvature_rows)
            curv_idx = None if len(idx) == n_fit else idx
            used = len(idx)
        fit = _task_stats(X[:n_fit], y[:n_fit], w[:n_fit], bounds, curv_idx, per_task)
        c.append(fit.c), b.append(fit.b), sums.append(fit.block_sums)
        curv_sum = fit.H_sub.copy() if curv_sum is None else curv_sum + fit.H_sub
        if per_task:
            Hs.append(fit.H)
        if N > n_fit:
            h = _task_stats(X[n_fit:], y[n_fit:], w[n_fit:], np.array([0, N - n_fit]), None, True)
            held.append(h)
            held_curv = h.H_sub.copy() if held_curv is None else held_curv + h.H_sub
    if bounds is None or curv_sum is None:
        raise PolicyGradExError("no tasks to compute statistics of")
    n = len(c)
    out = Statistics(c=np.array(c), b=np.stack(b), curvature=curv_sum / n, block_sums=np.stack(sums),
                     block_rows=np.diff(bounds), rows=n_fit, curvature_rows=used,
                     H=np.stack(Hs) if per_task else None)
    if held:
        assert held_curv is not None
        out.held_c = np.array([h.c for h in held])
        out.held_b = np.stack([h.b for h in held])
        out.held_curvature = held_curv / n
        out.held_H = np.stack([h.H for h in held]) if per_task else None  # type: ignore[misc]
    return out


def rows_of_feature_set(data: FeatureSet, split: bool = False) -> Iterator[TaskRows]:
    """The tasks of a stacked :class:`FeatureSet`, one at a time; ``split``: with the split labels and weights of
    the per-task baseline where the set has them (:attr:`FeatureSet.split_labels`), for the gradient signal's halves."""
    split = split and data.split_labels is not None and data.split_weights is not None
    for i in range(data.n):
        if split:
            yield data.features[i], data.split_labels[i], data.split_weights[i]  # type: ignore[index]
        else:
            yield data.features[i], data.labels[i], data.weights[i]


def rows_of_files(paths: list[Path], split: bool = False) -> Iterator[TaskRows]:
    """The tasks' rows read from their feature files one at a time (never all in memory); ``split``: with the split
    labels and weights of the per-task baseline where every file has them, as :func:`rows_of_feature_set`."""
    shape = None
    split = split and all(npz_holds(p, "split_labels") for p in paths)
    labels, weights = ("split_labels", "split_weights") if split else ("labels", "weights")
    for p in paths:
        a = load_npz(p)
        if not {"features", labels, weights} <= set(a):
            raise PolicyGradExError(f"{p} lacks features/{labels}/{weights}; delete it to recompute the features")
        if shape is not None and a["features"].shape != shape:
            raise PolicyGradExError(f"feature files disagree in shape ({p}: {a['features'].shape} vs {shape}); "
                                    f"delete {p.parent} to recompute")
        shape = a["features"].shape
        yield (torch.from_numpy(np.ascontiguousarray(a["features"], dtype=np.float32)),
               torch.from_numpy(np.asarray(a[labels], dtype=np.float32)),
               torch.from_numpy(np.asarray(a[weights], dtype=np.float32)))


def statistics_of_files(paths: list[Path], holdout_fraction: float, blocks: int = 32,
                        curvature_rows: int | None = None, per_task: bool = False) -> Statistics:
    """:func:`compute_statistics` of a run's feature files, streamed (the fitting rows: :func:`.features.fit_rows`)."""
    if not paths:
        raise PolicyGradExError("no feature files")
    N = int(np.load(paths[0], mmap_mode="r")["labels"].shape[0])
    return compute_statistics(rows_of_files(paths), fit_rows(N, holdout_fraction), blocks, curvature_rows, per_task)


# ----------------------------------------------------------------------------------------------- closed form
def _inverse(K: np.ndarray) -> np.ndarray:
    """K^-1 for a symmetric positive definite K, by Cholesky (raises a clear error when K is singular)."""
    try:
        L = np.linalg.cholesky(K)
    except np.linalg.LinAlgError:
        raise PolicyGradExError("the surrogate's curvature is singular: use --l2 > 0") from None
    Linv = np.linalg.solve(L, np.eye(K.shape[0]))
    return Linv.T @ Linv


def closed_form_affinity(stats: Statistics, l2: float, evaluation: str = "in_sample",
                         b: np.ndarray | None = None) -> np.ndarray:
    """The shared-curvature surrogate's pair coefficients P (n x n, diagonal 0), whose standardised interaction
    part is the limit of the subset path's U over all subsets (module docstring). ``b`` replaces the fitting rows'
    b_k (replicates: :mod:`.confidence`); ``evaluation`` ``held_out`` evaluates f^ on the held-out statistics."""
    B = stats.b if b is None else b
    A = _inverse(stats.curvature + l2 * np.eye(stats.d))
    if evaluation == "held_out":
        if stats.held_b is None or stats.held_curvature is None:
            raise PolicyGradExError("no held-out transitions: raise --holdout-fraction or use --evaluation in_sample")
        if b is not None:
            raise PolicyGradExError("replicates of the held-out closed form are not supported")
        BA = B @ A
        cross = stats.held_b @ BA.T
        P = cross + cross.T - BA @ stats.held_curvature @ BA.T
    else:
        Q = A - 0.5 * A @ stats.curvature @ A
        P = 2.0 * B @ Q @ B.T
    P = (P + P.T) / 2
    np.fill_diagonal(P, 0.0)
    return P


# ----------------------------------------------------------------------------------------------- Newton
@dataclass
class NewtonResult:
    """The Newton-step surrogate on sampled subsets: the same quantities as :class:`.surrogate.SurrogateResult`."""

    v: np.ndarray
    f_hat_in_sample: np.ndarray
    f_hat_held_out: np.ndarray
    loss_at_theta_star: np.ndarray
    task_loss_in_sample: np.ndarray
    """(m, n) each member's own loss at v_S on its fitting rows (nan for tasks not in the subset)."""
    task_loss_held_out: np.ndarray
    """(m, n) the same on its held-out rows (all nan when nothing is held out)."""


def newton_surrogate(stats: Statistics, subsets: list[list[int]], l2: float, chunk: int = 128) -> NewtonResult:
    """For every subset: v_S = (mean_S H_k + l2 I)^-1 mean_S b_k, and the quadratic model's unregularised loss at v_S
    on the fitting and on the held-out statistics, overall (f^ = minus it) and per task (minus each member's own).

    Needs per-task curvatures (``compute_statistics(per_task=True)``, O(n d^2)). Solves ``chunk`` subsets at once
    with a batched Cholesky: O(m d^3) time; memory O(chunk d^2) for the solves plus the outputs, of which the
    per-task losses are m x n (with m = 3 n^2, cubic in n: the reason ``auto`` uses Newton only up to 40 tasks)."""
    if stats.H is None:
        raise PolicyGradExError("the Newton surrogate needs per-task curvatures (statistics with per_task=True)")
    n, d, m = stats.n, stats.d, len(subsets)
    sizes = {len(s) for s in subsets}
    if len(sizes) != 1:
        raise PolicyGradExError(f"subsets of one size expected, got sizes {sorted(sizes)}")
    idx_all = torch.as_tensor(np.asarray(subsets, dtype=np.int64))
    H = torch.from_numpy(stats.H)
    b = torch.from_numpy(stats.b)
    held = stats.held_b is not None
    if held and stats.held_H is None:
        raise PolicyGradExError("the Newton surrogate needs per-task held-out curvatures (per_task=True)")
    Hh = torch.from_numpy(stats.held_H) if held else None
    bh = torch.from_numpy(stats.held_b) if held else None
    eye = torch.eye(d, dtype=torch.float64)
    V = np.zeros((m, d))
    f_in, f_out, l0 = np.zeros(m), np.full(m, np.nan), np.zeros(m)
    tl_in, tl_out = np.full((m, n), np.nan), np.full((m, n), np.nan)
    c, hc = stats.c, stats.held_c
    H_flat = H.reshape(n, d * d)
    for lo in range(0, m, chunk):
        idx = idx_all[lo : lo + chunk]                       # (s, alpha)
        s_, alpha = idx.shape
        member = torch.zeros(s_, n, dtype=torch.float64)
        member.scatter_(1, idx, 1.0 / alpha)                 # rows: the subset's mean over its tasks
        Hm = (member @ H_flat).reshape(s_, d, d)
        bm = member @ b
        L, info = torch.linalg.cholesky_ex(Hm + l2 * eye)
        if bool((info != 0).any()):
            raise PolicyGradExError("a subset's curvature is singular: use --l2 > 0")
        v = torch.cholesky_solve(bm[..., None], L)[..., 0]   # (s, d)
        V[lo : lo + s_] = v.numpy()
        rows = np.arange(lo, lo + s_)[:, None]
        ii = idx.numpy()
        # each member i's own quadratic model at v: l_i(v) = c_i - b_i.v + 1/2 v H_i v (one member position at a time)
        quad = torch.stack([torch.einsum("sd,sde,se->s", v, H[idx[:, a]], v) for a in range(alpha)], 1)
        own = c[ii] - torch.einsum("sad,sd->sa", b[idx], v).numpy() + 0.5 * quad.numpy()
        tl_in[rows, ii] = own
        f_in[lo : lo + s_] = -own.mean(1)
        if held:
            assert bh is not None and hc is not None and Hh is not None
            quad_h = torch.stack([torch.einsum("sd,sde,se->s", v, Hh[idx[:, a]], v) for a in range(alpha)], 1)
            own_h = hc[ii] - torch.einsum("sad,sd->sa", bh[idx], v).numpy() + 0.5 * quad_h.numpy()
            tl_out[rows, ii] = own_h
            f_out[lo : lo + s_] = -own_h.mean(1)
            l0[lo : lo + s_] = hc[ii].mean(1)
        else:
            l0[lo : lo + s_] = c[ii].mean(1)
    return NewtonResult(V, f_in, f_out, l0, tl_in, tl_out)
