"""The actor-critic of every network (CleanRL's PPO layout: separate actor and critic, orthogonal initialisation,
categorical or diagonal-Gaussian policy) and its plain MLP body.

A network differs only in its *body*, the module that maps an observation (with the one-hot task id as its last
``task_dim`` entries, when the run has one) to the actor's outputs or the critic's value. The multitask networks in
this package (multi-head, Soft Modularization, CARE, PaCo) are bodies too.
"""

from __future__ import annotations

from collections.abc import Callable

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


Body = Callable[[int, int, int, NetworkConfig, float], nn.Module]
"""(obs_dim, out_dim, task_dim, config, out_std) -> a module mapping observations (..., obs_dim) to (..., out_dim)."""


def mlp_body(obs_dim: int, out_dim: int, task_dim: int, config: NetworkConfig, out_std: float) -> nn.Module:
    """The plain MLP: the one-hot task id, if any, is just more input."""
    return mlp([obs_dim, *config.hidden_sizes, out_dim], config.activation, out_std=out_std)


def hidden_layers(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers with the activation after every one (orthogonal init, gain sqrt 2): a feature extractor."""
    act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [layer_init(nn.Linear(a, b)), act()]
    return nn.Sequential(*layers)


def stacked_linear(count: int, fan_in: int, fan_out: int, std: float) -> tuple[nn.Parameter, nn.Parameter]:
    """``count`` independent linear maps as one (count, fan_in, fan_out) weight and (count, fan_out) bias, each
    initialised like :func:`layer_init`: the modules, heads, encoders and parameter sets of the multitask bodies."""
    weight = torch.empty(count, fan_out, fan_in)
    for w in weight:
        torch.nn.init.orthogonal_(w, std)
    return nn.Parameter(weight.transpose(1, 2).contiguous()), nn.Parameter(torch.zeros(count, fan_out))


def split_task(obs: torch.Tensor, task_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(state, one-hot task id): the task id is the last ``task_dim`` entries of every observation."""
    return obs[..., : obs.shape[-1] - task_dim], obs[..., obs.shape[-1] - task_dim :]


def require_task_id(name: str, task_dim: int) -> None:
    if task_dim < 1:
        raise PolicyGradExError(f"network {name!r} routes by task and needs the task id: run with --task-id")


class ActorCritic(nn.Module):
    """Separate actor and critic of the same body (CleanRL's layout); with the MLP body and three hidden layers,
    each is a 4-layer MLP. The parameters PolicyGradEx adapts are the actor's (names starting with ``actor``)."""

    def __init__(self, obs_dim: int, action_space: gym.Space, config: NetworkConfig, task_dim: int = 0,
                 body: Body = mlp_body) -> None:
        super().__init__()
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            self.action_dim = int(action_space.n)
        elif isinstance(action_space, gym.spaces.Box):
            self.action_dim = int(np.prod(action_space.shape))
        else:
            raise PolicyGradExError(f"unsupported action space {action_space}")
        self.task_dim = task_dim
        self.critic = body(obs_dim, 1, task_dim, config, 1.0)
        self.actor = body(obs_dim, self.action_dim, task_dim, config, 0.01)
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
