"""Stage 3: the surrogate (paper eq. 3-4, Algorithm 1 lines 11-15).

For m random subsets S of alpha tasks, solve the weighted logistic regression on projected gradient features

    v_S = argmin_v  (1/|D_S|) sum_{(g~, y, w) in D_S} w * log(1 + exp(-y g~.v))  +  l2/2 ||v||^2

(no intercept: log r_t(theta_star) = 0), and estimate the subset's adapted performance f^(S) = -L_S(v_S), by
default on held-out transitions of S's tasks. All m fits run together in one batched L-BFGS: each iteration
computes, task by task, F_i @ V[subsets containing i]^T as one matrix product, so task i's features are read once
per iteration for every subset that holds it. The adapted policy is theta^(S) = theta_star + P v_S.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from policygradex.common.errors import PolicyGradExError
from policygradex.pipeline.config import SurrogateConfig
from policygradex.pipeline.features import FeatureSet
from policygradex.pipeline.projection import FactorisedProjection, RandomProjection
from policygradex.pipeline.statistics import Statistics, newton_surrogate

AUTO_EXACT_MAX_N = 12
"""``--surrogate auto`` fits the m subsets exactly up to this many tasks: the fits take seconds to a minute there and
every result page was made with them."""
AUTO_NEWTON_MAX_N = 40
"""``auto`` uses the Newton step on the m = 3 n^2 subsets up to this many tasks (about 5,000 d x d solves, of the
order of a minute on one core) and the closed form above. On six finished 10-task families the Newton f^ matched the
exact fits (Spearman and U correlation 1.000, the same groups), while the closed form's U correlated 0.50-0.999
with them (results/surrogate-reduction.md): the closed form is the choice only where nothing else is affordable."""


def resolve_surrogate(method: str, n: int) -> str:
    """The surrogate a run of n tasks uses: ``method`` itself, or for ``auto`` exact (n <= AUTO_EXACT_MAX_N),
    newton (n <= AUTO_NEWTON_MAX_N) or closed_form."""
    if method == "auto":
        if n <= AUTO_EXACT_MAX_N:
            return "exact"
        return "newton" if n <= AUTO_NEWTON_MAX_N else "closed_form"
    if method not in ("exact", "newton", "closed_form"):
        raise PolicyGradExError(f"unknown surrogate method {method!r}; choose auto, exact, newton or closed_form")
    return method


# ----------------------------------------------------------------------------------------------- subsets
def default_subset_size(n: int) -> int:
    """alpha = min(5, max(2, n // 2)): 5 for the paper's 10-task families (its Table 1 uses subsets of size 5);
    capped at 5 so the pair-specific part of f^(S) is not averaged away in large families."""
    return min(5, max(2, n // 2))


def default_num_subsets(n: int) -> int:
    """m = 3 n^2 (the paper's m = O(n^2)): with alpha = 5 and n = 10 every pair is in ~67 subsets on average.
    On the cartpole demo the split-half reliability of U was ~0.4 (per half of 150 subsets) at alpha = 5, and ~0 at
    alpha = 3, where each pair is covered a third as often."""
    return 3 * n * n


def pair_counts(subsets: list[list[int]], n: int) -> np.ndarray:
    """n x n matrix: how many subsets hold both i and j (diagonal: how many hold i)."""
    counts = np.zeros((n, n), dtype=np.int64)
    for s in subsets:
        idx = np.asarray(s)
        counts[np.ix_(idx, idx)] += 1
    return counts


ENUMERATE_MAX = 200_000
"""Up to this many possible subsets C(n, alpha), they are enumerated and m of them drawn without replacement;
above it, distinct subsets are drawn by rejection (m = O(n^2) is then a vanishing fraction of all subsets)."""


@dataclass(frozen=True)
class SubsetSample:
    """The m distinct subsets the surrogate fits, and how they were chosen."""

    subsets: list[list[int]]
    """Sorted task indices of each subset; no subset appears twice."""
    topped_up: int
    """Subsets added after the m draws so that every pair of tasks shares at least one subset."""
    possible: int
    """C(n, alpha): how many distinct subsets exist."""
    requested: int
    """The m asked for."""

    @property
    def exhaustive(self) -> bool:
        """True when every possible subset is used exactly once (m >= C(n, alpha))."""
        return len(self.subsets) == self.possible


def sample_subsets(n: int, alpha: int, m: int, seed: int) -> SubsetSample:
    """m distinct subsets of alpha tasks, uniform without replacement among the C(n, alpha) possible ones; every
    possible subset exactly once when m >= C(n, alpha). Then, while some pair of tasks is in no subset, one more
    distinct subset holding that pair plus alpha - 2 uniform others is added (rare at the default m).

    Repeated subsets would add nothing but duplicated noise to U, and would sit on both sides of the split-half
    reliability check, inflating it (the demo's m = 300 > C(10, 5) = 252 drawn with repetition gave 175 distinct
    subsets, 52 of them in both halves)."""
    if not 2 <= alpha <= n:
        raise PolicyGradExError(f"subset size alpha={alpha} must be between 2 and the number of tasks n={n}")
    if m < 1:
        raise PolicyGradExError(f"number of subsets m={m} must be >= 1")
    possible = math.comb(n, alpha)
    rng = np.random.default_rng(seed)
    if possible <= ENUMERATE_MAX:
        every = list(itertools.combinations(range(n), alpha))
        if m >= possible:
            chosen = [list(s) for s in every]
        else:
            chosen = [list(every[i]) for i in rng.choice(possible, m, replace=False)]
    else:
        seen: set[tuple[int, ...]] = set()
        chosen = []
        while len(chosen) < m:
            s = tuple(sorted(int(x) for x in rng.choice(n, alpha, replace=False)))
            if s not in seen:
                seen.add(s)
                chosen.append(list(s))
    present = {tuple(s) for s in chosen}
    counts = pair_counts(chosen, n)
    added = 0
    for i, j in itertools.combinations(range(n), 2):
        while counts[i, j] == 0:  # a subset with i, j absent so far exists: at most C(n-2, alpha-2) tries are needed
            others = [t for t in range(n) if t not in (i, j)]
            extra = tuple(sorted([i, j, *(int(x) for x in rng.choice(others, alpha - 2, replace=False))]))
            if extra in present:
                continue
            present.add(extra)
            chosen.append(list(extra))
            counts[np.ix_(extra, extra)] += 1
            added += 1
    assert (counts > 0).all(), "every pair must be covered"
    return SubsetSample(chosen, added, possible, m)


# ----------------------------------------------------------------------------------------------- data
class _Batch:
    """All m problems at once: per task, the indices of the subsets that hold it."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor, w: torch.Tensor, subsets: list[list[int]]) -> None:
        self.X, self.y, self.w = X, y, w
        self.m, self.n = len(subsets), X.shape[0]
        self.members = [torch.tensor([j for j, s in enumerate(subsets) if i in s], dtype=torch.long)
                        for i in range(self.n)]
        sizes = torch.tensor([len(s) for s in subsets], dtype=X.dtype)
        self.count = sizes * X.shape[1]  # |D_S|

    def loss_grad(
        self, V: torch.Tensor, l2: float, need_grad: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Objective (m,), its gradient (m, d) and the unregularised per-task mean losses (m, n; nan off-subset)."""
        loss = torch.zeros(self.m, dtype=V.dtype)
        grad = torch.zeros_like(V) if need_grad else None
        task_loss = torch.full((self.m, self.n), float("nan"), dtype=V.dtype)
        for i in range(self.n):
            idx = self.members[i]
            if len(idx) == 0:
                continue
            margin = -self.y[i][:, None] * (self.X[i] @ V[idx].T)  # (N, s)
            terms = self.w[i][:, None] * F.softplus(margin)
            total = terms.sum(0)
            loss.index_add_(0, idx, total)
            task_loss[idx, i] = total / self.X.shape[1]
            if grad is not None:
                dz = -(self.w[i] * self.y[i])[:, None] * torch.sigmoid(margin)
                grad.index_add_(0, idx, (self.X[i].T @ dz).T)
        loss = loss / self.count + 0.5 * l2 * (V * V).sum(1)
        if grad is not None:
            grad = grad / self.count[:, None] + l2 * V
        return loss, grad, task_loss


@dataclass
class FitInfo:
    iterations: int
    converged: np.ndarray
    grad_inf_norm: np.ndarray


def fit_logistic_batched(
    X: torch.Tensor, y: torch.Tensor, w: torch.Tensor, subsets: list[list[int]], cfg: SurrogateConfig
) -> tuple[torch.Tensor, FitInfo]:
    """Solve all m weighted, L2-regularised logistic regressions (no intercept) with one batched L-BFGS.

    X: (n, N, d) features, y: (n, N) labels in {-1, +1}, w: (n, N) weights. Problem j uses the rows of the tasks
    in ``subsets[j]``. Armijo backtracking per problem; curvature pairs with s.y <= 0 are skipped (rho = 0).
    """
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    batch = _Batch(X.to(dtype), y.to(dtype), w.to(dtype), subsets)
    m, d, h = batch.m, X.shape[2], cfg.history
    V = torch.zeros(m, d, dtype=dtype)
    f, g, _ = batch.loss_grad(V, cfg.l2)
    assert g is not None
    S = torch.zeros(h, m, d, dtype=dtype)
    Y = torch.zeros(h, m, d, dtype=dtype)
    rho = torch.zeros(h, m, dtype=dtype)
    gamma = 1.0 / g.norm(dim=1).clamp_min(1.0)
    done = g.abs().amax(1) <= cfg.tol
    it = 0
    for it in range(1, cfg.max_iter + 1):
        if bool(done.all()):
            it -= 1
            break
        # two-loop recursion, batched over problems; slot (it-1) % h is the newest pair
        order = [(it - 2 - k) % h for k in range(min(it - 1, h))]
        q = g.clone()
        alphas = []
        for j in order:
            a = rho[j] * (S[j] * q).sum(1)
            q -= a[:, None] * Y[j]
            alphas.append(a)
        r = gamma[:, None] * q
        for j, a in zip(reversed(order), reversed(alphas)):
            b = rho[j] * (Y[j] * r).sum(1)
            r += S[j] * (a - b)[:, None]
        direction = -r
        slope = (direction * g).sum(1)
        bad = slope >= 0
        if bool(bad.any()):
            direction[bad] = -g[bad]
            slope[bad] = -(g[bad] * g[bad]).sum(1)
        direction[done] = 0.0
        step = torch.ones(m, dtype=dtype)
        accepted = done.clone()
        V_new, f_new, g_new = V.clone(), f.clone(), g.clone()
        for _ in range(40):
            trial = V + step[:, None] * direction
            ft, gt, _ = batch.loss_grad(trial, cfg.l2)
            assert gt is not None
            ok = ~accepted & (ft <= f + 1e-4 * step * slope)
            V_new[ok], f_new[ok], g_new[ok] = trial[ok], ft[ok], gt[ok]
            accepted |= ok
            if bool(accepted.all()):
                break
            step = torch.where(accepted, step, step * 0.5)
        stalled = ~accepted  # no decrease found: at the precision limit
        s_vec, y_vec = V_new - V, g_new - g
        sy = (s_vec * y_vec).sum(1)
        slot = (it - 1) % h
        use = (sy > 1e-12) & accepted & ~done
        S[slot] = torch.where(use[:, None], s_vec, 0.0)
        Y[slot] = torch.where(use[:, None], y_vec, 0.0)
        rho[slot] = torch.where(use, 1.0 / sy.clamp_min(1e-30), 0.0)
        gamma = torch.where(use, sy / (y_vec * y_vec).sum(1).clamp_min(1e-30), gamma)
        V, f, g = V_new, f_new, g_new
        done = done | stalled | (g.abs().amax(1) <= cfg.tol)
    ginf = g.abs().amax(1)
    return V, FitInfo(iterations=it, converged=(ginf <= cfg.tol).numpy(), grad_inf_norm=ginf.numpy())


@dataclass
class SurrogateResult:
    """Everything stage 3 produces (written to subsets.npz, surrogate.json and surrogate_v.npy)."""

    subsets: list[list[int]]
    v: np.ndarray
    """(m, d) fitted v_S; theta^(S) = theta_star + P v_S."""
    f_hat: np.ndarray
    """(m,) f^(S) = -L_S(v_S) under the configured evaluation (in-sample by default, as the paper)."""
    f_hat_in_sample: np.ndarray
    f_hat_held_out: np.ndarray
    loss_at_theta_star: np.ndarray
    """(m,) held-out L_S(0) (in-sample when nothing is held out): the loss before adaptation, for reference."""
    task_loss: np.ndarray
    """(m, n) task i's own mean loss at v_S under the configured evaluation (nan where i is not in S)."""
    info: FitInfo
    topped_up: int


def run_surrogate(data: FeatureSet, subsets: list[list[int]], cfg: SurrogateConfig, topped_up: int = 0) -> SurrogateResult:
    """Fit every subset on the fitting transitions, then evaluate f^ in and out of sample."""
    X, y, w = data.part(held_out=False)
    V, info = fit_logistic_batched(X, y, w, subsets, cfg)
    dtype = V.dtype
    fit_batch = _Batch(X.to(dtype), y.to(dtype), w.to(dtype), subsets)
    Xh, yh, wh = data.part(held_out=True)
    if Xh.shape[1] == 0 and cfg.evaluation == "held_out":
        raise PolicyGradExError("no held-out transitions: raise features.holdout_fraction or use evaluation=in_sample")
    with torch.no_grad():
        l_in, _, tl_in = fit_batch.loss_grad(V, 0.0, need_grad=False)
        if Xh.shape[1] > 0:
            held_batch = _Batch(Xh.to(dtype), yh.to(dtype), wh.to(dtype), subsets)
            l_out, _, tl_out = held_batch.loss_grad(V, 0.0, need_grad=False)
            l_zero, _, _ = held_batch.loss_grad(torch.zeros_like(V), 0.0, need_grad=False)
        else:  # in-sample evaluation with nothing held out
            l_out, tl_out = torch.full_like(l_in, float("nan")), torch.full_like(tl_in, float("nan"))
            l_zero, _, _ = fit_batch.loss_grad(torch.zeros_like(V), 0.0, need_grad=False)
    held = cfg.evaluation == "held_out"
    return SurrogateResult(
        subsets=subsets,
        v=V.numpy(),
        f_hat=-(l_out if held else l_in).numpy(),
        f_hat_in_sample=-l_in.numpy(),
        f_hat_held_out=-l_out.numpy(),
        loss_at_theta_star=l_zero.numpy(),
        task_loss=(tl_out if held else tl_in).numpy(),
        info=info,
        topped_up=topped_up,
    )


def run_newton(stats: Statistics, subsets: list[list[int]], cfg: SurrogateConfig, topped_up: int = 0) -> SurrogateResult:
    """The Newton-step surrogate (:func:`.statistics.newton_surrogate`) on the same subsets, as a SurrogateResult.
    Its ``info`` records no iterations: the step is exact for the quadratic model (gradient 0 there)."""
    res = newton_surrogate(stats, subsets, cfg.l2)
    held = cfg.evaluation == "held_out"
    if held and stats.held_b is None:
        raise PolicyGradExError("no held-out transitions: raise features.holdout_fraction or use evaluation=in_sample")
    m = len(subsets)
    return SurrogateResult(
        subsets=subsets, v=res.v, f_hat=res.f_hat_held_out if held else res.f_hat_in_sample,
        f_hat_in_sample=res.f_hat_in_sample, f_hat_held_out=res.f_hat_held_out,
        loss_at_theta_star=res.loss_at_theta_star,
        task_loss=res.task_loss_held_out if held else res.task_loss_in_sample,
        info=FitInfo(iterations=0, converged=np.ones(m, dtype=bool), grad_inf_norm=np.zeros(m)), topped_up=topped_up,
    )


def reconstruct_theta(theta_star: torch.Tensor, projection: RandomProjection | FactorisedProjection,
                      v: np.ndarray) -> torch.Tensor:
    """theta^(S) = theta_star + P v_S (flat, over the policy parameters)."""
    delta = projection.lift(torch.as_tensor(v, dtype=torch.float32))
    return theta_star + delta


def relative_distance(theta_star: torch.Tensor, theta: torch.Tensor) -> float:
    return float((theta - theta_star).norm() / theta_star.norm())

