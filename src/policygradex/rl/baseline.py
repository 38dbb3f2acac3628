"""The linear feature baseline of policy-gradient meta-RL (Duan et al. 2016, rllab; used by MAML and ProMP).

V(s_t) ~ w . phi(s_t, t) with phi = (o, o^2, t/100, (t/100)^2, (t/100)^3, 1), o the observation clipped to [-10, 10]
and t the step within the episode; w is fitted by ridge regression to the discounted returns-to-go of the very
episodes whose advantages it then gives. The time features let it predict the shrinking return near a time limit,
so episodes are not bootstrapped past their end.
"""

from __future__ import annotations

import torch


def baseline_features(obs: torch.Tensor) -> torch.Tensor:
    """phi for (T, E, obs_dim) time-major observations of episodes that all start at t = 0: (T, E, 2 obs_dim + 4)."""
    T, E = obs.shape[:2]
    o = obs.clamp(-10.0, 10.0)
    t = (torch.arange(T, dtype=obs.dtype) / 100.0).reshape(T, 1, 1).expand(T, E, 1)
    return torch.cat([o, o * o, t, t * t, t ** 3, torch.ones_like(t)], dim=-1)


def fit_linear_baseline(obs: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, reg: float = 1e-5) -> torch.Tensor:
    """Fitted values (T, E) of the ridge regression of ``returns`` on phi(obs) over the steps where ``mask`` is 1
    (0 elsewhere). Solved in float64; the ridge coefficient grows tenfold, up to five times, while the solution is
    not finite (as rllab's LinearFeatureBaseline)."""
    phi = baseline_features(obs.double())
    keep = mask.bool()
    X, y = phi[keep], returns.double()[keep]
    gram, rhs = X.T @ X, X.T @ y
    eye = torch.eye(X.shape[1], dtype=torch.float64)
    for _ in range(5):
        w = torch.linalg.lstsq(gram + reg * eye, rhs.unsqueeze(-1)).solution.squeeze(-1)
        if torch.isfinite(w).all():
            break
        reg *= 10.0
    return ((phi @ w) * keep).to(returns.dtype)


def quadratic_features(obs: torch.Tensor) -> torch.Tensor:
    """(..., D) observations -> (..., 1 + D + D (D + 1) / 2): a constant, o and the products o_i o_j (i <= j) of
    the observation clipped to [-10, 10]; above 32 dimensions only the squares o_i^2 (1 + 2 D features)."""
    o = obs.double().clamp(-10.0, 10.0)
    D = o.shape[-1]
    if D > 32:
        quad = o * o
    else:
        i, j = torch.triu_indices(D, D)
        quad = o[..., i] * o[..., j]
    return torch.cat([torch.ones_like(o[..., :1]), o, quad], dim=-1)


def fit_task_values(obs: torch.Tensor, next_obs: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                    columns: list[torch.Tensor], reg: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """One value function per group of sub-env ``columns`` (a task's sub-envs): the ridge regression of
    ``returns`` (T, E) on :func:`quadratic_features` of ``obs`` (T, E, D) over the steps where ``mask`` is 1.
    Returns the fitted values (T, E) and those of ``next_obs`` (E, D), the observation after the last step.
    The ridge is relative: reg times the mean diagonal of the Gram matrix, grown tenfold while not finite."""
    phi, phi_next = quadratic_features(obs), quadratic_features(next_obs)
    values = torch.zeros(returns.shape, dtype=torch.float64)
    next_values = torch.zeros(returns.shape[1], dtype=torch.float64)
    for cols in columns:
        keep = mask[:, cols].bool()
        X, y = phi[:, cols][keep], returns[:, cols].double()[keep]
        gram, rhs = X.T @ X, X.T @ y
        scale = float(gram.diagonal().mean()) or 1.0
        eye = torch.eye(X.shape[1], dtype=torch.float64)
        r = reg
        for _ in range(5):
            w = torch.linalg.solve(gram + r * scale * eye, rhs)
            if torch.isfinite(w).all():
                break
            r *= 10.0
        values[:, cols] = phi[:, cols] @ w
        next_values[cols] = phi_next[cols] @ w
    return values.to(returns.dtype), next_values.to(returns.dtype)
