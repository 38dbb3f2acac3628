"""Multi-head network: a shared trunk and one output head per task (the multi-head baseline of multitask RL)."""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn

from policygradex.nets.config import NetworkConfig
from policygradex.nets.mlp import ActorCritic, hidden_layers, require_task_id, split_task, stacked_linear


class MultiHeadBody(nn.Module):
    """trunk(observation with its task id) -> the task's own linear head. Computed for every head and combined by
    the one-hot, so that it runs under ``vmap`` (per-transition gradients) without indexing by a traced value."""

    def __init__(self, obs_dim: int, out_dim: int, task_dim: int, config: NetworkConfig, out_std: float) -> None:
        super().__init__()
        require_task_id("multihead", task_dim)
        self.task_dim = task_dim
        self.trunk = hidden_layers([obs_dim, *config.hidden_sizes], config.activation)
        self.head_weight, self.head_bias = stacked_linear(task_dim, config.hidden_sizes[-1], out_dim, out_std)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        _, task = split_task(obs, self.task_dim)
        h = self.trunk(obs)
        per_head = torch.einsum("...h,tho->...to", h, self.head_weight) + self.head_bias
        return torch.einsum("...t,...to->...o", task, per_head)


def multihead(obs_dim: int, action_space: gym.Space, config: NetworkConfig, task_dim: int) -> ActorCritic:
    return ActorCritic(obs_dim, action_space, config, task_dim, body=MultiHeadBody)
