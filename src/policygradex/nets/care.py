"""CARE (Sodhani, Zhang and Pineau, ICML 2021): a mixture of state encoders, weighted by attention from a task
context, and a head that sees the mixed encoding beside the context.

CARE's context is a pretrained language model's embedding of each task's description. Nothing can be downloaded
here, so the context is a **learned task embedding** of the one-hot task id, of size ``hidden_sizes[0]``. That
keeps CARE's structure: shared encoders, and task-specific attention over them. It does not keep the prior that
language metadata brings.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn

from policygradex.nets.config import NetworkConfig
from policygradex.nets.mlp import ActorCritic, layer_init, mlp, require_task_id, split_task, stacked_linear


class CAREBody(nn.Module):
    def __init__(self, obs_dim: int, out_dim: int, task_dim: int, config: NetworkConfig, out_std: float) -> None:
        super().__init__()
        require_task_id("care", task_dim)
        k, hidden = config.num_encoders, list(config.hidden_sizes)
        if k < 1:
            raise ValueError("CARE needs num_encoders >= 1")
        self.task_dim, self.k = task_dim, k
        self.act = {"tanh": torch.tanh, "relu": torch.relu}[config.activation]
        context_dim = hidden[0]
        self.context = nn.Linear(task_dim, context_dim, bias=False)
        self.attention = layer_init(nn.Linear(context_dim, k), std=0.01)  # near-uniform attention at the start
        sizes = [obs_dim - task_dim, *hidden[:-1]]  # every encoder: the state through all but the last hidden layer
        self.encoder_weight = nn.ParameterList()
        self.encoder_bias = nn.ParameterList()
        for a, b in zip(sizes[:-1], sizes[1:]):
            w, bias = stacked_linear(k, a, b, float(torch.sqrt(torch.tensor(2.0))))
            self.encoder_weight.append(w)
            self.encoder_bias.append(bias)
        self.head = mlp([sizes[-1] + context_dim, hidden[-1], out_dim], config.activation, out_std)

    def attention_weights(self, obs: torch.Tensor) -> torch.Tensor:
        """(..., k): the task's softmax attention over the encoders."""
        _, task = split_task(obs, self.task_dim)
        return torch.softmax(self.attention(self.context(task)), dim=-1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        state, task = split_task(obs, self.task_dim)
        x = state.unsqueeze(-2).expand(*state.shape[:-1], self.k, -1)
        for w, b in zip(self.encoder_weight, self.encoder_bias):
            x = self.act(torch.einsum("...ki,kio->...ko", x, w) + b)
        mixed = torch.einsum("...k,...kd->...d", self.attention_weights(obs), x)
        return self.head(torch.cat([mixed, self.context(task)], dim=-1))


def care(obs_dim: int, action_space: gym.Space, config: NetworkConfig, task_dim: int) -> ActorCritic:
    return ActorCritic(obs_dim, action_space, config, task_dim, body=CAREBody)
