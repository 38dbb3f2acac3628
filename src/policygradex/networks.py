"""Policy networks: a task-conditioned actor-critic with a discrete (categorical) or Gaussian action head.

A network is any ``nn.Module`` with the interface of :class:`ActorCritic`:

* ``forward(obs, action) -> log_prob``: log pi(a|s), the function whose per-transition gradient is g_t
  (it must use only the parameters named by ``policy_parameter_names()``);
* ``get_action_and_value(obs, action=None) -> (action, log_prob, entropy, value)`` and ``get_value(obs)`` for PPO;
* ``policy_parameter_names()``: the parameters theta whose gradients are features (the actor's).

Factories live in :data:`NETWORKS` (``name -> factory(obs_dim, action_space, config)``); Soft Modularization,
CARE and PaCo will register there.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Normal

from .config import NetworkConfig
from .errors import PolicyGradExError


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


NetworkFactory = Callable[[int, gym.Space, NetworkConfig], nn.Module]

NETWORKS: dict[str, NetworkFactory] = {"mlp": ActorCritic}
"""Network factories by name."""


def make_network(obs_dim: int, action_space: gym.Space, config: NetworkConfig) -> nn.Module:
    if config.name in NETWORKS:
        return NETWORKS[config.name](obs_dim, action_space, config)
    if ":" in config.name:
        module_name, _, attr = config.name.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise PolicyGradExError(f"network {config.name!r} cannot be loaded: {exc}") from None
        return factory(obs_dim, action_space, config)
    raise PolicyGradExError(f"unknown network {config.name!r}; known: {sorted(NETWORKS)} or package.module:function")


def flat_params(model: nn.Module, names: list[str]) -> torch.Tensor:
    """The named parameters concatenated into one vector (in the given order)."""
    params = dict(model.named_parameters())
    return torch.cat([params[n].detach().reshape(-1) for n in names])
