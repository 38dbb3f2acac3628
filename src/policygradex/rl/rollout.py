"""Rollouts of a policy in a multitask vector environment, with per-task episode returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from policygradex.envs.vector import MultiTaskVectorEnv


@dataclass
class Rollout:
    """num_steps x num_envs arrays of one rollout (time-major)."""

    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    rewards: torch.Tensor
    values: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    valid: torch.Tensor
    """False on reset steps (the action was ignored by the env): excluded everywhere."""
    next_value: torch.Tensor
    advantages: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    returns: torch.Tensor = field(default_factory=lambda: torch.empty(0))


class EpisodeTracker:
    """Accumulates episodic returns per sub-env; finished episodes are reported with their task id."""

    def __init__(self, env_task: np.ndarray) -> None:
        self.env_task = env_task
        self.ret = np.zeros(len(env_task))
        self.length = np.zeros(len(env_task), dtype=np.int64)
        self.finished: list[tuple[int, float, int]] = []

    def update(self, rewards: np.ndarray, done: np.ndarray, valid: np.ndarray) -> None:
        self.ret += np.where(valid, rewards, 0.0)
        self.length += valid
        for j in np.flatnonzero(done):
            self.finished.append((int(self.env_task[j]), float(self.ret[j]), int(self.length[j])))
            self.ret[j] = 0.0
            self.length[j] = 0

    def pop(self) -> list[tuple[int, float, int]]:
        out, self.finished = self.finished, []
        return out


def env_action(action: torch.Tensor, space: gym.Space) -> np.ndarray:
    a = action.cpu().numpy()
    if isinstance(space, gym.spaces.Box):
        return np.clip(a, space.low, space.high).astype(space.dtype)
    return a.astype(np.int64)


@torch.no_grad()
def collect_rollout(
    env: MultiTaskVectorEnv,
    model: nn.Module,
    obs: np.ndarray,
    num_steps: int,
    tracker: EpisodeTracker | None = None,
) -> tuple[Rollout, np.ndarray]:
    """Run ``num_steps`` steps of every sub-env with the current policy; return the rollout and the next obs."""
    n_env = env.num_envs
    obs_buf = torch.zeros((num_steps, n_env, env.obs_dim))
    act_buf: list[torch.Tensor] = []
    logp_buf = torch.zeros((num_steps, n_env))
    rew_buf = torch.zeros((num_steps, n_env))
    val_buf = torch.zeros((num_steps, n_env))
    term_buf = torch.zeros((num_steps, n_env), dtype=torch.bool)
    trunc_buf = torch.zeros((num_steps, n_env), dtype=torch.bool)
    valid_buf = torch.zeros((num_steps, n_env), dtype=torch.bool)
    for t in range(num_steps):
        o = torch.as_tensor(obs)
        obs_buf[t] = o
        action, logp, _, value = model.get_action_and_value(o)
        act_buf.append(action)
        logp_buf[t] = logp
        val_buf[t] = value
        obs, rewards, terminated, truncated, reset_mask = env.step(env_action(action, env.single_action_space))
        rew_buf[t] = torch.as_tensor(rewards, dtype=torch.float32)
        term_buf[t] = torch.as_tensor(terminated)
        trunc_buf[t] = torch.as_tensor(truncated)
        valid_buf[t] = torch.as_tensor(~reset_mask)
        if tracker is not None:
            tracker.update(rewards, terminated | truncated, ~reset_mask)
    next_value = model.get_value(torch.as_tensor(obs))
    rollout = Rollout(
        obs_buf, torch.stack(act_buf), logp_buf, rew_buf, val_buf, term_buf, trunc_buf, valid_buf, next_value
    )
    return rollout, obs
