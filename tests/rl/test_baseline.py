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
