"""Rollouts of a policy in a multitask vector environment, with per-task episode returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from policygradex.envs.base import EpisodeMetric
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


class Episode(NamedTuple):
    """One finished episode of a sub-env."""

    task: int
    ret: float
    length: int
    metrics: dict[str, Any]
    """The family's episode metrics (e.g. Meta-World's success, an MO family's vector return)."""


class EpisodeTracker:
    """Accumulates episodic returns (and the family's episode metrics) per sub-env; finished episodes are reported
    with their task id. ``active`` (indices into ``env_task``; None: all) says which sub-envs the arrays given to
    :meth:`update` belong to, for a :class:`~policygradex.envs.vector.TaskBatchEnv` that steps a batch of them."""

    def __init__(self, env_task: np.ndarray, metrics: Sequence[EpisodeMetric] = ()) -> None:
        self.env_task = env_task
        self.metrics = tuple(metrics)
        self.ret = np.zeros(len(env_task))
        self.length = np.zeros(len(env_task), dtype=np.int64)
        self.acc: dict[str, np.ndarray] = {}
        self.finished: list[Episode] = []
        self.active: np.ndarray | None = None

    def update(self, rewards: np.ndarray, done: np.ndarray, valid: np.ndarray,
               env: Any = None) -> None:
        """One step of the active sub-envs; ``env`` (whose last step this is) gives the metrics' info values."""
        idx: slice | np.ndarray = slice(None) if self.active is None else self.active
        self.ret[idx] += np.where(valid, rewards, 0.0)
        self.length[idx] += valid
        for m in self.metrics:
            values = env.info_values(m.info_key) if env is not None else None
            if values is None:
                continue
            values = np.where(valid.reshape(-1, *[1] * (values.ndim - 1)), values, 0.0)
            acc = self.acc.setdefault(m.name, np.zeros((len(self.env_task), *values.shape[1:])))
            acc[idx] = acc[idx] + values if m.reduce == "sum" else np.maximum(acc[idx], values)
        ended = np.flatnonzero(done)
        for j in ended if self.active is None else self.active[ended]:
            metrics = {name: acc[j].tolist() for name, acc in self.acc.items()}
            self.finished.append(Episode(int(self.env_task[j]), float(self.ret[j]), int(self.length[j]), metrics))
            self.ret[j] = 0.0
            self.length[j] = 0
            for acc in self.acc.values():
                acc[j] = 0.0

    def pop(self) -> list[Episode]:
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
            tracker.update(rewards, terminated | truncated, ~reset_mask, env)
    next_value = model.get_value(torch.as_tensor(obs))
    rollout = Rollout(
        obs_buf, torch.stack(act_buf), logp_buf, rew_buf, val_buf, term_buf, trunc_buf, valid_buf, next_value
    )
    return rollout, obs
