"""Sharpness of the policy-gradient loss: Hessian-vector products, trace estimators, the top eigenvalue.

The loss is PPO's clipped surrogate on a fixed set of transitions (obs, actions, log pi_old, advantages),

    L(theta) = -mean_t min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t),   r_t = exp(log pi_theta(a_t|s_t) - log pi_old),

as a function of the policy parameters (the actor; the critic does not enter it). Hessian-vector products are
forward-over-reverse (``torch.func.jvp`` of ``torch.func.grad``): one HVP costs about two gradients and never forms
the p x p Hessian. On top of them:

- :func:`hutchinson`: tr(H) ~ mean of z^T H z over Rademacher probes z, with its standard error;
- :func:`hutchpp`: Hutch++ (Meyer, Musco, Musco, Woodruff 2021): a third of the probes find a sketch Q of H's
  top range, whose trace is taken exactly; Hutchinson estimates the rest on the complement. Same number of HVPs,
  much lower variance when H has a few dominant eigenvalues (as policy-loss Hessians do);
- :func:`positive_trace`: tr(H^+), the sum of the positive eigenvalues (Theorem 1 truncates negative curvature),
  by stochastic Lanczos quadrature (Ubaru, Chen, Saad 2017): for Rademacher probes z, a few Lanczos steps from z
  give a Gauss quadrature of z^T max(H, 0) z;
- :func:`positive_quadratic_form`: w^T H^+ w for one given w, by the same quadrature started at w (no probes, so
  no sampling error): the weighted Hessian W^T [H]^+ W that Theorem 1 defines its constant H with;
- :func:`top_eigenvalue`: the largest (algebraic) eigenvalue by Lanczos (scipy's ``eigsh`` on the HVP operator).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import nn
from torch.func import functional_call, grad, jvp

HVP = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Batch:
    """Transitions on which the PPO loss is evaluated."""

    obs: torch.Tensor
    actions: torch.Tensor
    logp_old: torch.Tensor
    advantages: torch.Tensor

    def __len__(self) -> int:
        return int(self.obs.shape[0])


def clipped_losses(logp: torch.Tensor, batch_logp_old: torch.Tensor, adv: torch.Tensor, clip_coef: float) -> torch.Tensor:
    """Per-transition PPO loss -min(r A, clip(r, 1 -+ eps) A)."""
    ratio = torch.exp(logp - batch_logp_old)
    return -torch.min(ratio * adv, ratio.clamp(1 - clip_coef, 1 + clip_coef) * adv)


def ppo_loss_fn(model: nn.Module, batch: Batch, clip_coef: float = 0.2) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """(L(flat policy parameters), the model's current flat policy parameters), float64 for clean second derivatives."""
    names = model.policy_parameter_names()
    params = dict(model.named_parameters())
    shapes = [params[k].shape for k in names]
    sizes = [params[k].numel() for k in names]
    fixed = {k: v.detach().double() for k, v in params.items() if k not in names}
    fixed |= {k: v.detach().double() for k, v in model.named_buffers()}
    obs, actions = batch.obs.double(), batch.actions
    if actions.is_floating_point():
        actions = actions.double()
    logp_old, adv = batch.logp_old.double(), batch.advantages.double()
    model64 = _double_copy(model)

    def loss(flat: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(flat, sizes)
        theta = {k: c.reshape(s) for k, c, s in zip(names, chunks, shapes)}
        logp = functional_call(model64, theta | fixed, (obs, actions))
        return clipped_losses(logp, logp_old, adv, clip_coef).mean()

    flat0 = torch.cat([params[k].detach().reshape(-1) for k in names]).double()
    return loss, flat0


def _double_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).double()


def make_hvp(loss: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor) -> HVP:
    """v -> H v at theta, forward-over-reverse."""
    g = grad(loss)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        return jvp(g, (theta,), (v.to(theta.dtype),))[1]

    return hvp


def exact_hessian(loss: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor) -> torch.Tensor:
    """The full p x p Hessian (small networks only: for tests and checks)."""
    return torch.func.hessian(loss)(theta)


@dataclass
class TraceEstimate:
    trace: float
    stderr: float
    """Standard error of the stochastic part (0 when nothing stochastic is left)."""
    num_hvps: int


def _rademacher(p: int, k: int, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    return (torch.randint(0, 2, (p, k), generator=gen) * 2 - 1).to(dtype)


def hutchinson(hvp: HVP, p: int, num_probes: int = 100, seed: int = 0, dtype: torch.dtype = torch.float64) -> TraceEstimate:
    """tr(H) ~ (1/m) sum z_i^T H z_i, z_i Rademacher; stderr = sample std / sqrt(m)."""
    if num_probes < 1:
        raise ValueError("num_probes must be >= 1")
    Z = _rademacher(p, num_probes, torch.Generator().manual_seed(seed), dtype)
    values = torch.stack([Z[:, i] @ hvp(Z[:, i]) for i in range(num_probes)])
    stderr = float(values.std() / math.sqrt(num_probes)) if num_probes > 1 else float("nan")
    return TraceEstimate(float(values.mean()), stderr, num_probes)


def hutchpp(hvp: HVP, p: int, num_probes: int = 99, seed: int = 0, dtype: torch.dtype = torch.float64) -> TraceEstimate:
    """Hutch++ with ``num_probes`` HVPs in all: k = num_probes // 3 for the sketch S, k for Q^T H Q and k for
    Hutchinson on (I - QQ^T) H (I - QQ^T); stderr is that of the Hutchinson part."""
    k = max(1, num_probes // 3)
    gen = torch.Generator().manual_seed(seed)
    S = _rademacher(p, k, gen, dtype)
    G = _rademacher(p, k, gen, dtype)
    HS = torch.stack([hvp(S[:, i]) for i in range(k)], dim=1)
    Q, _ = torch.linalg.qr(HS)
    top = sum(float(Q[:, i] @ hvp(Q[:, i])) for i in range(Q.shape[1]))
    G_perp = G - Q @ (Q.T @ G)
    values = torch.stack([G_perp[:, i] @ hvp(G_perp[:, i]) for i in range(k)])
    stderr = float(values.std() / math.sqrt(k)) if k > 1 else float("nan")
    return TraceEstimate(top + float(values.mean()), stderr, 3 * k)


def top_eigenvalue(hvp: HVP, p: int, tol: float = 1e-6, maxiter: int | None = None, seed: int = 0) -> float:
    """Largest algebraic eigenvalue of H by Lanczos (scipy ``eigsh``, which="LA") on the HVP operator."""
    def matvec(x: np.ndarray) -> np.ndarray:
        return hvp(torch.from_numpy(np.ascontiguousarray(x).reshape(-1))).detach().numpy()

    op = LinearOperator((p, p), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(p)
    if p <= 2:  # eigsh needs k < p
        H = np.stack([matvec(e) for e in np.eye(p)], axis=1)
        return float(np.linalg.eigvalsh((H + H.T) / 2).max())
    vals = eigsh(op, k=1, which="LA", tol=tol, maxiter=maxiter, v0=v0, return_eigenvectors=False)
    return float(vals[0])


def lanczos(hvp: HVP, v0: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` Lanczos iterations from v0 with full reorthogonalisation; returns the tridiagonal (alpha, beta).

    Stops early when the Krylov space is exhausted (beta ~ 0)."""
    V = [v0 / v0.norm()]
    alphas: list[torch.Tensor] = []
    betas: list[torch.Tensor] = []
    for j in range(steps):
        w = hvp(V[j])
        alphas.append(w @ V[j])
        Vm = torch.stack(V, dim=1)
        w = w - Vm @ (Vm.T @ w)
        w = w - Vm @ (Vm.T @ w)  # twice is enough (Kahan-Parlett)
        b = w.norm()
        if j == steps - 1 or b < 1e-10 * (abs(float(alphas[-1])) + 1e-30):
            break
        betas.append(b)
        V.append(w / b)
    return torch.stack(alphas), (torch.stack(betas) if betas else torch.zeros(0, dtype=v0.dtype))


def positive_trace(hvp: HVP, p: int, num_probes: int = 6, lanczos_steps: int = 10, seed: int = 0,
                   dtype: torch.dtype = torch.float64) -> TraceEstimate:
    """tr(H^+) = sum of H's positive eigenvalues, by stochastic Lanczos quadrature; stderr over probes."""
    if num_probes < 1 or lanczos_steps < 1:
        raise ValueError("num_probes and lanczos_steps must be >= 1")
    gen = torch.Generator().manual_seed(seed)
    values = []
    for i in range(num_probes):
        z = _rademacher(p, 1, gen, dtype)[:, 0]
        values.append(_quadrature(hvp, z, lanczos_steps))
    arr = np.array(values)
    stderr = float(arr.std(ddof=1) / math.sqrt(num_probes)) if num_probes > 1 else float("nan")
    return TraceEstimate(float(arr.mean()), stderr, num_probes * lanczos_steps)


def _quadrature(hvp: HVP, v: torch.Tensor, lanczos_steps: int) -> float:
    """Gauss quadrature of v^T max(H, 0) v from ``lanczos_steps`` Lanczos steps started at v."""
    a, b = lanczos(hvp, v, lanczos_steps)
    T = torch.diag(a) + torch.diag(b, 1) + torch.diag(b, -1)
    theta, U = torch.linalg.eigh(T)
    return float(v @ v) * float((U[0] ** 2 * theta.clamp_min(0)).sum())


def positive_quadratic_form(hvp: HVP, w: torch.Tensor, lanczos_steps: int = 30) -> float:
    """w^T H^+ w, H^+ = H with its negative eigenvalues set to 0, by Lanczos quadrature from w.

    Exact once the Krylov space from w is exhausted (at most p steps); with fewer steps it is the Gauss quadrature
    of the spectral measure of H seen from w, which converges fast when that measure has few large atoms. 0 for
    w = 0."""
    if lanczos_steps < 1:
        raise ValueError("lanczos_steps must be >= 1")
    if float(w.norm()) == 0.0:
        return 0.0
    return _quadrature(hvp, w.to(torch.float64), lanczos_steps)

