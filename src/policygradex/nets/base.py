"""What the pipeline needs from a policy network (:class:`Policy`), the network registry, and flat parameter vectors.

A new network is a module in this package whose class satisfies :class:`Policy` and whose constructor takes
``(obs_dim, action_space, NetworkConfig, task_dim)``; register it in :data:`NETWORKS` (or load it as ``package.module:function``
with ``NetworkConfig.name``). The gradient features are taken over :meth:`Policy.policy_parameter_names` only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

import gymnasium as gym
import torch
from torch import nn

from policygradex.common.errors import PolicyGradExError
from policygradex.nets.care import care
from policygradex.nets.config import NetworkConfig
from policygradex.nets.mlp import ActorCritic
from policygradex.nets.multihead import multihead
from policygradex.nets.paco import paco
from policygradex.nets.softmod import soft_modularization


class Policy(Protocol):
    """The interface every stage relies on (rollouts, PPO, per-transition gradients, the surrogate's theta^(S))."""

    def policy_parameter_names(self) -> list[str]:
        """Names (as in ``named_parameters()``) of the actor's parameters: the parameters PolicyGradEx adapts."""
        ...

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log pi(action | obs), for one transition (under ``torch.func.vmap``) or a batch."""
        ...

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        """The critic's V(obs), shape (batch,)."""
        ...

    def get_action_and_value(
        self, obs: torch.Tensor, action: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(action, sampled if None; log pi(action | obs); entropy; V(obs)) as PPO uses them."""
        ...

    # Optional, for networks that mask tasks in the loss (PaCo; PPO calls them when present):
    # task_loss_mask(obs, sample_loss) -> (batch,) weights of the transitions in this minibatch's loss, and
    # reset_masked_tasks(optimizer) after the optimizer step.


NetworkFactory = Callable[[int, gym.Space, NetworkConfig, int], nn.Module]
"""(obs_dim, action_space, config, task_dim) -> the network. ``task_dim`` is the length of the one-hot task id at
the end of every observation (0 without a task id)."""

NETWORKS: dict[str, NetworkFactory] = {
    "mlp": ActorCritic,
    "multihead": multihead,
    "softmod": soft_modularization,
    "care": care,
    "paco": paco,
}
"""Network factories by name."""

TASK_ROUTED = ("multihead", "softmod", "care", "paco")
"""The networks that route by the task id, and so need one."""


def check_network_name(name: str) -> None:
    """One clear error for a network that is neither registered nor ``package.module:function``."""
    if name not in NETWORKS and ":" not in name:
        raise PolicyGradExError(f"unknown network {name!r}; known: {', '.join(NETWORKS)} or package.module:function")


def with_network(config: NetworkConfig, name: str) -> NetworkConfig:
    """``config`` for network ``name``: a network that routes by task gets the task id, others keep the choice."""
    return replace(config, name=name, task_id=True if name in TASK_ROUTED else config.task_id)


def make_network(obs_dim: int, action_space: gym.Space, config: NetworkConfig, task_dim: int = 0) -> nn.Module:
    """The network named by ``config.name``: a registered name or ``package.module:function``."""
    if config.name in NETWORKS:
        return NETWORKS[config.name](obs_dim, action_space, config, task_dim)
    if ":" in config.name:
        module_name, _, attr = config.name.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise PolicyGradExError(f"network {config.name!r} cannot be loaded: {exc}") from None
        return factory(obs_dim, action_space, config, task_dim)
    raise PolicyGradExError(f"unknown network {config.name!r}; known: {sorted(NETWORKS)} or package.module:function")


def flat_params(model: nn.Module, names: list[str]) -> torch.Tensor:
    """The named parameters concatenated into one vector (in the given order)."""
    params = dict(model.named_parameters())
    return torch.cat([params[n].detach().reshape(-1) for n in names])
