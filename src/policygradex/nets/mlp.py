"""The MLP actor-critic (CleanRL's PPO network): orthogonal initialisation, categorical or diagonal-Gaussian policy."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Normal

from policygradex.common.errors import PolicyGradExError
from policygradex.nets.config import NetworkConfig


def layer_init(layer: nn.Linear, std: float = float(np.sqrt(2)), bias_const: float = 0.0) -> nn.Linear:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


def mlp(sizes: list[int], activation: str, out_std: float) -> nn.Sequential:
    act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        last = i == len(sizes) - 2
        layers.append(layer_init(nn.Linear(sizes[i], sizes[i + 1]), std=out_std if last else float(np.sqrt(2))))
        if not last:
            layers.append(act())
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs (CleanRL's layout): with three hidden layers, each is a 4-layer MLP."""

    def __init__(self, obs_dim: int, action_space: gym.Space, config: NetworkConfig) -> None:
        super().__init__()
        hidden = list(config.hidden_sizes)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            self.action_dim = int(action_space.n)
        elif isinstance(action_space, gym.spaces.Box):
            self.action_dim = int(np.prod(action_space.shape))
        else:
            raise PolicyGradExError(f"unsupported action space {action_space}")
        self.critic = mlp([obs_dim, *hidden, 1], config.activation, out_std=1.0)
        self.actor = mlp([obs_dim, *hidden, self.action_dim], config.activation, out_std=0.01)
        if not self.discrete:
            self.actor_logstd = nn.Parameter(torch.zeros(1, self.action_dim))

    def policy_parameter_names(self) -> list[str]:
        return [name for name, _ in self.named_parameters() if name.startswith("actor")]

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Distribution:
        out = self.actor(obs)
        if self.discrete:
            return Categorical(logits=out)
        return Normal(out, self.actor_logstd.expand_as(out).exp())

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log pi(action | obs); works on a single transition (under vmap) or a batch."""
        out = self.actor(obs)
        if self.discrete:
            logp = torch.log_softmax(out, dim=-1)
            return torch.gather(logp, -1, action.long().unsqueeze(-1)).squeeze(-1)
        logstd = self.actor_logstd.reshape(out.shape[-1])
        z = (action - out) * torch.exp(-logstd)
        return (-0.5 * z.pow(2) - logstd - 0.5 * np.log(2 * np.pi)).sum(-1)

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def get_action_and_value(
        self, obs: torch.Tensor, action: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        dist = self.distribution(obs)
        if action is None:
            action = dist.sample()
        logp = dist.log_prob(action)
        ent = dist.entropy()
        if not self.discrete:
            logp, ent = logp.sum(-1), ent.sum(-1)
        return action, logp, ent, self.get_value(obs)
