"""The closed-form affinity with per-task curvature to first order: U_ij = E[f^(S) | i, j in S] over all subsets of
alpha tasks, computed from per-task statistics without sampling a subset.

:mod:`.statistics` gives f^(S) for a subset from per-task b_k, H_k (the Newton step on the quadratic model):

    f^(S) = -c_S + 1/2 b_S^T K_S^-1 b_S + l2/2 b_S^T K_S^-2 b_S,     K_S = H_S + l2 I,

with c_S, b_S, H_S the means over the subset's tasks (in sample; H_S K_S^-2 = K_S^-1 - l2 K_S^-2 gives this form).
With the shared curvature K = mean_k H_k + l2 I, A = K^-1, and Delta_k = H_k - mean H (so sum_k Delta_k = 0),
K_S^-1 = A - A Delta_S A + O(Delta^2) and

    f^(S) = f0(S) + f1(S) + O(Delta^2),
    f0(S) = -c_S + b_S^T (A/2 + l2 A^2/2) b_S                         (the shared-curvature closed form)
    f1(S) = -(A b_S)^T Delta_S (R b_S),   R = A/2 + l2 A^2              (first order in the curvature spread)

f0 is quadratic and f1 cubic in the subset's indicator. Their mean over the subsets holding i and j is exact in
closed form: a subset holding i, j is {i, j} plus s = alpha - 2 of the other n - 2 tasks drawn without
replacement, which holds a given 1, 2, 3 others with probability q1, q2, q3 (:func:`inclusion`); every sum over
"the others" is a total over all tasks less the i and j terms. What remains are per-task quantities (Delta_k
applied to four vectors, two scalars) and one n x n matrix Q_ij = x_j^T Delta_i y_j (:class:`CurvatureTerms`).
Standardising E[f^ | i, j] (additive effects removed) gives what the subset path's interaction U converges to
with all subsets, since the least-squares additive part of f^ only adds additive effects to it.

What it drops: curvature spread beyond first order (O(Delta^2)) and the softplus's fourth-order terms (see
:mod:`.statistics`). Cost: one more streamed pass over the features for the per-task curvatures on the same rows
as the shared one (O(n r d^2)), and O(n^2 d^2) for Q, O(n^2 d) for the rest; memory O(n d + n^2).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from policygradex.common.errors import PolicyGradExError
from policygradex.pipeline.statistics import Statistics, TaskRows, closed_form_affinity, curvature_rows_index


def inclusion(n: int, alpha: int) -> tuple[float, float, float]:
    """(q1, q2, q3): the probability that a uniform subset of alpha tasks holding i and j also holds a given 1, 2 or
    3 of the other n - 2 tasks."""
    s, m = alpha - 2, n - 2
    q1 = s / m if m > 0 else 0.0
    q2 = s * (s - 1) / (m * (m - 1)) if s >= 2 and m >= 2 else 0.0
    q3 = s * (s - 1) * (s - 2) / (m * (m - 1) * (m - 2)) if s >= 3 and m >= 3 else 0.0
    return q1, q2, q3


def _solvers(stats: Statistics, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """A = (mean H + l2 I)^-1 and R = A/2 + l2 A^2."""
    K = stats.curvature + l2 * np.eye(stats.d)
    try:
        A = np.linalg.inv(K)
    except np.linalg.LinAlgError:
        raise PolicyGradExError("the surrogate's curvature is singular: use --l2 > 0") from None
    A = (A + A.T) / 2
    return A, A / 2 + l2 * A @ A


@dataclass
class CurvatureTerms:
    """What f1 needs of the per-task curvature spread Delta_k = H_k - mean H, with x_k = A b_k, y_k = R b_k and the
    totals X = sum x_k, Y = sum y_k, M = sum y_k x_k^T."""

    z: np.ndarray
    """(n, d) Delta_k x_k."""
    w: np.ndarray
    """(n, d) Delta_k y_k."""
    vx: np.ndarray
    """(n, d) Delta_k X."""
    vy: np.ndarray
    """(n, d) Delta_k Y."""
    tau: np.ndarray
    """(n,) x_k^T Delta_k y_k."""
    mu: np.ndarray
    """(n,) sum_a x_a^T Delta_k y_a = <Delta_k, M>."""
    Q: np.ndarray
    """(n, n) Q_ij = x_j^T Delta_i y_j."""

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"terms_{k}": getattr(self, k) for k in ("z", "w", "vx", "vy", "tau", "mu", "Q")}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "CurvatureTerms | None":
        keys = ("z", "w", "vx", "vy", "tau", "mu", "Q")
        if not all(f"terms_{k}" in arrays for k in keys):
            return None
        return cls(**{k: np.asarray(arrays[f"terms_{k}"]) for k in keys})


def curvature_terms(tasks: Iterable[TaskRows], stats: Statistics, l2: float) -> CurvatureTerms:
    """One streamed pass over the tasks' rows (the same ones, in the same order, as :func:`.statistics.
    compute_statistics` read): each task's H_k on the shared curvature's rows, and what f1 needs of it."""
    A, R = _solvers(stats, l2)
    x, y = stats.b @ A, stats.b @ R
    X, Y = x.sum(0), y.sum(0)
    M = y.T @ x
    n, d = stats.n, stats.d
    idx = curvature_rows_index(stats.rows, stats.curvature_rows)
    out = {k: np.zeros((n, d)) for k in ("z", "w", "vx", "vy")}
    tau, mu, Q = np.zeros(n), np.zeros(n), np.zeros((n, n))
    k = -1
    for k, (F, _y, wt) in enumerate(tasks):
        if k >= n:
            raise PolicyGradExError("more tasks than statistics")
        Fs = F[: stats.rows][idx].to(torch.float64)
        ws = wt[: stats.rows][idx].to(torch.float64)
        H = ((Fs * (0.25 * ws)[:, None]).T @ Fs).numpy() / len(idx)
        D = H - stats.curvature
        out["z"][k], out["w"][k], out["vx"][k], out["vy"][k] = D @ x[k], D @ y[k], D @ X, D @ Y
        tau[k] = x[k] @ out["w"][k]
        mu[k] = float(np.sum(D * M.T))
        Q[k] = np.einsum("jd,jd->j", x, y @ D)
    if k != n - 1:
        raise PolicyGradExError(f"statistics of {n} tasks, rows of {k + 1}")
    return CurvatureTerms(Q=Q, tau=tau, mu=mu, **out)


# ----------------------------------------------------------------------------------------------- pair algebra
# A "pair expression" is a combination of task i's, task j's and the total's value of one per-task family of
# vectors: {"i": coef, "j": coef, "T": coef}. _dot and _bil turn two of them into an n x n matrix over (i, j).
XIJ = {"i": 1.0, "j": 1.0}
OTHERS = {"T": 1.0, "i": -1.0, "j": -1.0}


def _dot(F: np.ndarray, G: np.ndarray, p: dict[str, float], q: dict[str, float]) -> np.ndarray:
    """(i, j) -> p(F)^T q(G) for per-task families F, G (n, d); "T" is the family's total."""
    FT, GT = F.sum(0), G.sum(0)
    FG = F @ G.T
    diag = np.einsum("kd,kd->k", F, G)
    table = {
        ("i", "i"): diag[:, None], ("j", "j"): diag[None, :], ("i", "j"): FG, ("j", "i"): FG.T,
        ("i", "T"): (F @ GT)[:, None], ("j", "T"): (F @ GT)[None, :],
        ("T", "i"): (G @ FT)[:, None], ("T", "j"): (G @ FT)[None, :], ("T", "T"): np.asarray(FT @ GT),
    }
    n = F.shape[0]
    out = np.zeros((n, n))
    for a, ca in p.items():
        for b, cb in q.items():
            out = out + ca * cb * table[(a, b)]
    return out


def _bil(t: CurvatureTerms, x: np.ndarray, y: np.ndarray, p: dict[str, float], q: dict[str, float]) -> np.ndarray:
    """(i, j) -> p(x)^T (Delta_i + Delta_j) q(y), from the curvature terms; "T" is X or Y."""
    Y = y.sum(0)
    col = lambda v: v[:, None]  # noqa: E731  (a per-task value of task i)
    Bi = {  # p^T Delta_i q for each pair of families' members
        ("i", "i"): col(t.tau), ("i", "j"): t.z @ y.T, ("i", "T"): col(t.z @ Y),
        ("j", "i"): t.w @ x.T, ("j", "j"): t.Q, ("j", "T"): t.vy @ x.T,
        ("T", "i"): col(np.einsum("kd,kd->k", t.vx, y)), ("T", "j"): t.vx @ y.T, ("T", "T"): col(t.vx @ Y),
    }
    swap = {"i": "j", "j": "i", "T": "T"}
    n = x.shape[0]
    out = np.zeros((n, n))
    for a, ca in p.items():
        for b, cb in q.items():
            # p^T Delta_j q is the transpose of the same term with the roles of i and j swapped
            out = out + ca * cb * (Bi[(a, b)] + np.broadcast_to(Bi[(swap[a], swap[b])], (n, n)).T)
    return out


def expected_affinity(stats: Statistics, l2: float, alpha: int, terms: CurvatureTerms | None = None,
                      b: np.ndarray | None = None) -> np.ndarray:
    """E[f^(S) | i, j in S] over all subsets of ``alpha`` tasks (n x n, diagonal 0), in sample: the shared-curvature
    part f0, plus the first-order curvature part f1 when ``terms`` are given. ``b`` replaces the statistics' b_k
    (bootstrap replicates) in f0; f1's terms stay those of the full data (its share of U is small next to f0's).
    Standardised, f0 alone equals :func:`.statistics.closed_form_affinity`."""
    n = stats.n
    if not 2 <= alpha <= n:
        raise PolicyGradExError(f"subset size alpha={alpha} must be between 2 and the number of tasks n={n}")
    q1, q2, q3 = inclusion(n, alpha)
    A, R = _solvers(stats, l2)
    B = stats.b if b is None else b
    Qb = B @ (A / 2 + l2 * A @ A / 2)
    c = stats.c
    # f0 = -c_S + (1/alpha^2) b_S^T Q0 b_S, b_S the subset's sum
    sq = np.einsum("kd,kd->k", B, Qb)
    E = -(c[:, None] + c[None, :] + q1 * (c.sum() - c[:, None] - c[None, :])) / alpha
    E = E + (_dot(B, Qb, XIJ, XIJ) + 2 * q1 * _dot(B, Qb, XIJ, OTHERS)
             + (q1 - q2) * (sq.sum() - sq[:, None] - sq[None, :]) + q2 * _dot(B, Qb, OTHERS, OTHERS)) / alpha**2
    if terms is not None:
        x, y = stats.b @ A, stats.b @ R
        bil = lambda p, q: _bil(terms, x, y, p, q)  # noqa: E731
        # sum over the others a of x_a^T (Delta_i + Delta_j) y_a
        S6 = (terms.mu[:, None] + terms.mu[None, :] - terms.tau[:, None] - terms.tau[None, :] - terms.Q - terms.Q.T)
        tP = terms.tau.sum() - terms.tau[:, None] - terms.tau[None, :]
        Tac = _dot(terms.z, y, OTHERS, OTHERS)
        Tce = _dot(x, terms.w, OTHERS, OTHERS)
        Tae = -S6
        T3 = -bil(OTHERS, OTHERS)
        g = (bil(XIJ, XIJ) * (1 - q1)
             + (q1 - q2) * bil(XIJ, OTHERS)
             + (q1 - q2) * bil(OTHERS, XIJ)
             + (q1 - q2) * _dot(x, terms.w, XIJ, OTHERS)
             + (q1 - q2) * S6 + q2 * bil(OTHERS, OTHERS)
             + (q1 - q2) * _dot(terms.z, y, OTHERS, XIJ)
             + q1 * tP + q2 * (Tac + Tae + Tce - 3 * tP) + q3 * (T3 - Tac - Tae - Tce + 2 * tP))
        E = E - g / alpha**3
    E = (E + E.T) / 2
    np.fill_diagonal(E, 0.0)
    return E


def affinity(stats: Statistics, l2: float, alpha: int, evaluation: str = "in_sample",
             terms: CurvatureTerms | None = None, b: np.ndarray | None = None) -> np.ndarray:
    """The closed-form U a run clusters: :func:`expected_affinity` in sample, or the shared-curvature closed form on
    the held-out statistics (``held_out``, no curvature correction)."""
    if evaluation == "held_out":
        return closed_form_affinity(stats, l2, "held_out", b=b)
    return expected_affinity(stats, l2, alpha, terms, b)
