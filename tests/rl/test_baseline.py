"""Per-task value baselines: the regression they solve, and what they fix in the feature stage's advantages."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from policygradex.envs.conflicts import conflict_family
from policygradex.pipeline.config import RunConfig
from policygradex.pipeline.features import collect_transitions
from policygradex.pipeline.stages import make_model
from policygradex.rl.baseline import fit_task_values, quadratic_features


def test_quadratic_features_hold_every_product_once():
    o = torch.tensor([[2.0, 3.0]])
    assert quadratic_features(o).tolist() == [[1.0, 2.0, 3.0, 4.0, 6.0, 9.0]]
    wide = quadratic_features(torch.ones(1, 40))
    assert wide.shape == (1, 81)  # above 32 dimensions: squares only


def test_each_task_gets_its_own_exact_quadratic_fit():
    """Returns that are a different quadratic of the observation in each task's columns are reproduced exactly
    by that task's fit (including at the observation after the last step); masked rows do not enter the fit."""
    g = torch.Generator().manual_seed(0)
    T, E, D = 200, 4, 3
    obs, nxt = torch.randn(T, E, D, generator=g), torch.randn(E, D, generator=g)
    truth = [lambda o: 1.0 + o[..., 0] - 2.0 * o[..., 1] * o[..., 2], lambda o: -3.0 + o[..., 2] ** 2]
    columns = [torch.tensor([0, 1]), torch.tensor([2, 3])]
    returns = torch.zeros(T, E)
    for f, cols in zip(truth, columns):
        returns[:, cols] = f(obs[:, cols])
    mask = torch.ones(T, E)
    mask[::7] = 0
    returns[::7] = 1e6  # garbage where masked
    values, next_values = fit_task_values(obs, nxt, returns, mask, columns, reg=1e-9)
    for f, cols in zip(truth, columns):
        keep = mask[:, cols].bool()
        torch.testing.assert_close(values[:, cols][keep], f(obs[:, cols])[keep], atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(next_values[cols], f(nxt[cols]), atol=1e-3, rtol=1e-4)


def test_per_task_baseline_removes_the_shared_value_heads_bias():
    """Reward conflict, an untrained policy with no task id: the policy's value head is one function for every
    group, so each group's raw advantages are offset by how much more or less it is paid. Each task's own value
    function centres them (Monte Carlo advantages, lambda = 1: the regression's residuals, mean 0 per task)."""
    family = conflict_family("reward", "cartpole", n=6, groups=3, conflict=1.0, sizes=[2, 2, 2])
    cfg = RunConfig(family="planted(kind=reward,env=cartpole,n=6,groups=3,sizes=[2,2,2])")
    cfg = replace(cfg, network=replace(cfg.network, task_id=False), ppo=replace(cfg.ppo, gae_lambda=1.0),
                  features=replace(cfg.features, transitions_per_task=1024))
    torch.manual_seed(0)
    model = make_model(cfg, family)

    def mean_over_scale(baseline: str) -> np.ndarray:
        fc = replace(cfg.features, baseline=baseline)
        trans = collect_transitions(family, model, fc, cfg.ppo, seed=1, task_id=False)
        return np.array([t.advantages.mean() / t.advantages.std() for t in trans])

    shared, own = mean_over_scale("policy"), mean_over_scale("per_task")
    assert np.abs(own).max() < 0.1
    assert np.abs(shared).min() > 1.0  # the untrained value head is far off for every task


def test_split_baselines_share_no_fit_between_the_halves():
    """split_advantages: the first half (in time) of a task's transitions gets its advantages from a baseline fitted
    on that half alone, the rest from one fitted on the rest. With episodes that end at the boundary, changing every
    reward after it leaves the first half's split advantages exactly as they were, and the other way round, while
    the per-task baseline fitted on all the transitions (task_baselines) moves both halves."""
    from types import SimpleNamespace

    from policygradex.pipeline.features import split_advantages, task_baselines
    from policygradex.rl.gae import add_advantages
    from policygradex.rl.rollout import Rollout

    g = torch.Generator().manual_seed(0)
    T, E, D, length = 40, 2, 2, 5
    env = SimpleNamespace(obs_dim=D, task_id_dim=0, env_task=np.zeros(E, dtype=np.int64))
    terminated = torch.zeros(T, E, dtype=torch.bool)
    terminated[length - 1::length] = True
    obs = torch.randn(T, E, D, generator=g)

    def rollout(rewards: torch.Tensor) -> Rollout:
        return Rollout(obs=obs, actions=torch.zeros(T, E, dtype=torch.long), logprobs=torch.zeros(T, E),
                       rewards=rewards, values=torch.randn(T, E, generator=torch.Generator().manual_seed(1)),
                       terminated=terminated, truncated=torch.zeros(T, E, dtype=torch.bool),
                       valid=torch.ones(T, E, dtype=torch.bool), next_value=torch.zeros(E))

    def both(rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ro = rollout(rewards)
        split = split_advantages(ro, np.zeros((E, D)), env, [0], gamma=0.9, gae_lambda=0.95, half=T * E // 2)
        task_baselines(ro, np.zeros((E, D)), env, [0], gamma=0.9)
        add_advantages(ro, 0.9, 0.95)
        return split, ro.advantages

    rewards = torch.randn(T, E, generator=g)
    split, joint = both(rewards)
    boundary = T // 2  # time-major positions t E + e: the first T E / 2 rows are the first T / 2 steps
    for changed in (slice(boundary, None), slice(0, boundary)):
        kept = slice(0, boundary) if changed.start == boundary else slice(boundary, None)
        other = rewards.clone()
        other[changed] += 3.0 * torch.randn(other[changed].shape, generator=g)
        split2, joint2 = both(other)
        torch.testing.assert_close(split2[kept], split[kept], rtol=0, atol=1e-5)
        assert (joint2[kept] - joint[kept]).abs().max() > 1e-2  # the joint fit carries the other half's rewards
