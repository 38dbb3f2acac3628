"""MAML (rl.maml): the inner step against a hand-computed policy gradient, the meta-gradients against finite
differences, whole-episode collection, the linear baseline, and meta-learning on a toy family with a known optimum."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from policygradex.envs.base import Task, TaskFamily
from policygradex.envs.registry import load_family
from policygradex.nets.base import make_network
from policygradex.nets.config import NetworkConfig
from policygradex.rl.baseline import baseline_features, fit_linear_baseline
from policygradex.rl.config import MAMLConfig
from policygradex.rl.maml import (
    EpisodeBatch,
    actor_params,
    adapt,
    adaptation_curve,
    collect_episodes,
    discounted_returns,
    log_prob,
    meta_objective,
    meta_train,
    outer_loss,
    slot_tasks,
    stack,
)


def tiny_model(hidden: tuple[int, ...], obs_dim: int = 3, actions: int = 2, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return make_network(obs_dim, gym.spaces.Discrete(actions), NetworkConfig(hidden_sizes=hidden)).double()


def random_batch(model: torch.nn.Module, params: dict, K: int, T: int, E: int, obs_dim: int, seed: int,
                 logp_noise: float = 0.0) -> EpisodeBatch:
    """K slots of E episodes of T steps with random observations, actions and advantages; the last episode of each
    slot ends one step early (masked), and logp_old is the log-probability under ``params`` (plus noise)."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(K, T, E, obs_dim, generator=g, dtype=torch.float64)
    actions = torch.randint(0, 2, (K, T, E), generator=g)
    mask = torch.ones(K, T, E, dtype=torch.float64)
    mask[:, -1, -1] = 0.0
    adv = torch.randn(K, T, E, generator=g, dtype=torch.float64) * mask
    with torch.no_grad():
        logp = torch.stack([log_prob(model, {n: v[k] for n, v in params.items()}, obs[k], actions[k]) for k in range(K)])
    logp = logp + logp_noise * torch.randn(K, T, E, generator=g, dtype=torch.float64)
    return EpisodeBatch(obs, actions, torch.zeros_like(mask), mask, logp, adv)


def test_inner_step_is_the_hand_computed_policy_gradient_step() -> None:
    # a linear softmax policy: grad_W log pi(a|o) = (e_a - softmax(W o + b)) o^T, so the inner step on
    # L = -sum_t m_t A_t log pi(a_t|o_t) / sum_t m_t is W + lr * sum_t m_t A_t (e_a - p_t) o_t^T / sum_t m_t
    model = tiny_model(hidden=())
    theta = {k: v.detach() for k, v in actor_params(model).items()}
    assert set(theta) == {"actor.0.weight", "actor.0.bias"}
    batch = random_batch(model, stack(theta, 1), K=1, T=4, E=2, obs_dim=3, seed=1)
    lr = 0.3
    new = adapt(model, stack(theta, 1), batch, lr)
    W, b = theta["actor.0.weight"].numpy(), theta["actor.0.bias"].numpy()
    gW, gb = np.zeros_like(W), np.zeros_like(b)
    o, a = batch.obs[0].numpy().reshape(-1, 3), batch.actions[0].numpy().reshape(-1)
    m, A = batch.mask[0].numpy().reshape(-1), batch.advantages[0].numpy().reshape(-1)
    for t in range(len(a)):
        z = W @ o[t] + b
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        e = np.eye(2)[a[t]]
        gW += m[t] * A[t] * np.outer(e - p, o[t])
        gb += m[t] * A[t] * (e - p)
    np.testing.assert_allclose(new["actor.0.weight"][0].detach().numpy(), W + lr * gW / m.sum(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(new["actor.0.bias"][0].detach().numpy(), b + lr * gb / m.sum(), rtol=1e-12, atol=1e-12)


def _flat(d: dict) -> torch.Tensor:
    return torch.cat([v.reshape(-1) for v in d.values()])


def _unflat(x: torch.Tensor, like: dict) -> dict:
    out, i = {}, 0
    for k, v in like.items():
        out[k] = x[i:i + v.numel()].reshape(v.shape)
        i += v.numel()
    return out


def _finite_difference(f, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    g = torch.zeros_like(x)
    for i in range(len(x)):
        e = torch.zeros_like(x)
        e[i] = eps
        g[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return g


@pytest.mark.parametrize("inner_steps", [1, 2])
def test_meta_gradients_match_finite_differences(inner_steps: int) -> None:
    model = tiny_model(hidden=(3,), obs_dim=2)
    theta0 = {k: v.detach().clone() for k, v in actor_params(model).items()}
    K = 2
    cfg_so = MAMLConfig(inner_lr=0.7, clip_coef=100.0)  # no clipping: a smooth objective for finite differences
    cfg_fo = MAMLConfig(inner_lr=0.7, clip_coef=100.0, first_order=True)
    inner = [random_batch(model, stack(theta0, K), K, 5, 3, 2, seed=10 + j) for j in range(inner_steps)]
    adapted = stack(theta0, K)
    for b in inner:
        adapted = adapt(model, adapted, b, cfg_so.inner_lr)
    outer = random_batch(model, {k: v.detach() for k, v in adapted.items()}, K, 6, 3, 2, seed=20, logp_noise=0.2)

    def gradient(cfg: MAMLConfig) -> torch.Tensor:
        theta = {k: v.clone().requires_grad_() for k, v in theta0.items()}
        meta_objective(model, theta, inner, outer, cfg).backward()
        return _flat({k: v.grad for k, v in theta.items()})

    x0 = _flat(theta0)
    second = gradient(cfg_so)
    fd_second = _finite_difference(lambda x: meta_objective(model, _unflat(x, theta0), inner, outer, cfg_so).detach(), x0)
    np.testing.assert_allclose(second.numpy(), fd_second.numpy(), rtol=1e-6, atol=1e-9)

    # first order: d/d theta of the outer loss at theta - lr * (the inner gradients held fixed at their values)
    steps = []
    params = stack(theta0, K)
    for b in inner:
        new = adapt(model, params, b, cfg_so.inner_lr)
        steps.append({k: (params[k] - new[k]).detach() for k in params})
        params = {k: v.detach() for k, v in new.items()}

    def fixed_steps(x: torch.Tensor) -> torch.Tensor:
        p = stack(_unflat(x, theta0), K)
        for step in steps:
            p = {k: p[k] - step[k] for k in p}
        return outer_loss(model, p, outer, cfg_fo.clip_coef).detach()

    first = gradient(cfg_fo)
    np.testing.assert_allclose(first.numpy(), _finite_difference(fixed_steps, x0).numpy(), rtol=1e-6, atol=1e-9)
    # and the two differ by the second-order terms, which this problem makes large
    assert (first - second).norm() > 0.05 * second.norm()


def test_linear_baseline_fits_returns_that_are_linear_in_its_features() -> None:
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(30, 4, 2, generator=g, dtype=torch.float64)
    w = torch.randn(2 * 2 + 4, generator=g, dtype=torch.float64)
    mask = torch.ones(30, 4, dtype=torch.float64)
    mask[25:, 0] = 0.0
    returns = baseline_features(obs) @ w
    fitted = fit_linear_baseline(obs, returns * mask, mask, reg=1e-10)
    np.testing.assert_allclose(fitted.numpy(), (returns * mask).numpy(), atol=1e-6)


def test_discounted_returns_by_hand() -> None:
    rewards = torch.tensor([[1.0, 2.0], [1.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    out = discounted_returns(rewards * mask, mask, gamma=0.5)
    np.testing.assert_allclose(out.numpy(), [[1.75, 2.0], [1.5, 0.0], [1.0, 0.0], [0.0, 0.0]])


def test_slot_tasks_rotate_through_the_training_tasks() -> None:
    assert slot_tasks([4, 7, 9], 0, 5) == [4, 7, 9, 4, 7]
    assert slot_tasks([4, 7, 9], 1, 5) == [9, 4, 7, 9, 4]
    counts = np.bincount(sum((slot_tasks([0, 1, 2], i, 10) for i in range(3)), []))
    assert counts.tolist() == [10, 10, 10]  # balanced over iterations


class Bandit(gym.Env):
    """Ten steps per episode, reward 1 when the action is the task's target: the optimum init adapts in one step."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, target: int) -> None:
        self.target, self.t = target, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        return np.zeros(1, np.float32), float(int(action) == self.target), False, self.t >= 10, {}


def bandit_family() -> TaskFamily:
    return TaskFamily("bandit", tuple(Task(f"target={t}", (lambda t=t: Bandit(t)), {"target": t}) for t in (0, 1)))


def test_collect_episodes_plays_whole_episodes() -> None:
    family = load_family("cartpole")
    torch.manual_seed(0)
    model = make_network(4, gym.spaces.Discrete(2), NetworkConfig(hidden_sizes=(8,)))
    params = stack({k: v.detach() for k, v in actor_params(model).items()}, 2)
    batch = collect_episodes(family, [0, 9], model, params, 3, seed=1, cfg=MAMLConfig())
    lengths = batch.mask.sum(dim=1)  # (K, E)
    assert batch.obs.shape[:3] == batch.mask.shape and batch.obs.shape[-1] == 4
    # the mask is one run of ones from t = 0: each column is one episode from its reset, and CartPole pays 1 per step
    assert torch.equal(batch.mask.cumprod(dim=1), batch.mask)
    assert torch.equal(batch.returns, lengths)
    assert int(lengths.max()) == batch.mask.shape[1]
    with torch.no_grad():
        logp = torch.stack([log_prob(model, {k: v[i] for k, v in params.items()}, batch.obs[i], batch.actions[i])
                            for i in range(2)])
    torch.testing.assert_close(batch.logp_old, logp)
    valid = batch.advantages[batch.mask.bool()]
    assert abs(float(valid.mean())) < 1e-5  # normalised per slot
    # the same seed gives the same episodes
    torch.manual_seed(0)
    again = collect_episodes(family, [0, 9], model, params, 3, seed=1, cfg=MAMLConfig())
    torch.manual_seed(0)
    first = collect_episodes(family, [0, 9], model, params, 3, seed=1, cfg=MAMLConfig())
    assert torch.equal(first.actions, again.actions) and torch.equal(first.rewards, again.rewards)


@pytest.mark.parametrize("first_order", [False, True])
def test_maml_learns_an_initialisation_that_adapts_in_one_step(first_order: bool) -> None:
    # two tasks that want opposite actions: any single policy averages 5 of 10, and the best initialisation is the
    # undecided one that one inner step turns into the task's action (post-adaptation return 10, the optimum)
    family = bandit_family()
    cfg = MAMLConfig(iterations=20, meta_batch=4, trajectories=10, inner_lr=1.0, outer_lr=1e-2, first_order=first_order)
    trained = meta_train(family, [0, 1], NetworkConfig(hidden_sizes=(16,)), cfg, seed=0)
    curve = adaptation_curve(trained.model, family, [0, 1], 1, cfg, seed=5).mean(axis=1)
    torch.manual_seed(0)
    fresh = make_network(1, Bandit.action_space, NetworkConfig(hidden_sizes=(16,)))
    fresh_curve = adaptation_curve(fresh, family, [0, 1], 1, cfg, seed=5).mean(axis=1)
    assert curve[1] >= 9.5, curve
    assert curve[1] >= curve[0] + 3.0, curve
    assert curve[1] >= fresh_curve[1] + 2.0, (curve, fresh_curve)
    assert trained.curve[-1]["env_steps"] == 20 * 2 * 4 * 10 * 10  # iterations x (inner + outer) x slots x episodes x 10


def test_an_env_step_budget_ends_meta_training_after_the_iteration_that_reaches_it() -> None:
    # the bandit's episodes are 10 steps: an iteration takes (inner + outer) x 4 slots x 10 episodes x 10 = 800
    cfg = MAMLConfig(iterations=50, meta_batch=4, trajectories=10, env_steps=1000)
    trained = meta_train(bandit_family(), [0, 1], NetworkConfig(hidden_sizes=(8,)), cfg, seed=0)
    assert [row["env_steps"] for row in trained.curve] == [800, 1600]
