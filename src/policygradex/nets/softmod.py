"""Soft Modularization (Yang, Xu, Wu and Wang, NeurIPS 2020): a base network of modules, and a routing network that
softly chooses, per task and per state, how the modules of one layer feed the next.

We follow the authors' ``ModularGatedCascadeCondNet``:
- the state encoding ``f(s)`` is multiplied element-wise by a learned embedding of the one-hot task id (their
  ``cond_ob``), giving the routing input;
- each layer's routing probabilities, a softmax over the source modules, are computed from the routing input
  together with the previous layer's probabilities (their cascade);
- module j of layer l + 1 takes the sum over i of p^l[j, i] times module i's output;
- the last layer's modules are mixed by a final routing softmax and mapped to the output.
The module width is ``hidden_sizes[0]``.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn

from policygradex.nets.config import NetworkConfig
from policygradex.nets.mlp import ActorCritic, hidden_layers, layer_init, require_task_id, split_task, stacked_linear


class SoftModularBody(nn.Module):
    def __init__(self, obs_dim: int, out_dim: int, task_dim: int, config: NetworkConfig, out_std: float) -> None:
        super().__init__()
        require_task_id("softmod", task_dim)
        n, layers, width = config.num_modules, config.num_module_layers, config.hidden_sizes[0]
        if n < 1 or layers < 1:
            raise ValueError("Soft Modularization needs num_modules >= 1 and num_module_layers >= 1")
        self.task_dim, self.n, self.layers = task_dim, n, layers
        self.act = {"tanh": torch.tanh, "relu": torch.relu}[config.activation]
        state_dim = obs_dim - task_dim
        self.base = hidden_layers([state_dim, width, width], config.activation)
        self.task_embedding = nn.Linear(task_dim, width, bias=False)
        self.gating = hidden_layers([width, width], config.activation)
        # routing between consecutive module layers (layers - 1 of them), then the final mix of the last layer
        self.route = nn.ModuleList(layer_init(nn.Linear(width, n * n)) for _ in range(layers - 1))
        # the cascade: each routing after the first is conditioned on the previous one (the final mix included)
        self.cascade = nn.ModuleList(layer_init(nn.Linear(n * n, width)) for _ in range(layers - 1))
        self.route_out = layer_init(nn.Linear(width, n))
        self.module_weight = nn.ParameterList()
        self.module_bias = nn.ParameterList()
        for _ in range(layers):
            w, b = stacked_linear(n, width, width, float(torch.sqrt(torch.tensor(2.0))))
            self.module_weight.append(w)
            self.module_bias.append(b)
        self.out = layer_init(nn.Linear(width, out_dim), std=out_std)

    def routing(self, obs: torch.Tensor, encoded: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The routing probabilities: per layer transition (..., n, n) (rows: target module, summing to 1 over
        the source modules), and the final mix (..., n). ``encoded``: f(s), if already computed."""
        state, task = split_task(obs, self.task_dim)
        encoded = self.base(state) if encoded is None else encoded
        gate = self.gating(self.act(encoded * self.task_embedding(task)))
        probs: list[torch.Tensor] = []
        for route in self.route:
            cond = gate if not probs else gate * self.cascade[len(probs) - 1](probs[-1].flatten(-2))
            probs.append(torch.softmax(route(self.act(cond)).unflatten(-1, (self.n, self.n)), dim=-1))
        cond = gate if not probs else gate * self.cascade[-1](probs[-1].flatten(-2))
        return probs, torch.softmax(self.route_out(self.act(cond)), dim=-1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        state, _ = split_task(obs, self.task_dim)
        encoded = self.base(state)
        probs, final = self.routing(obs, encoded)
        x = encoded.unsqueeze(-2).expand(*state.shape[:-1], self.n, -1)  # every layer-0 module sees f(s)
        for layer in range(self.layers):
            if layer > 0:
                x = torch.einsum("...ji,...id->...jd", probs[layer - 1], x)
            x = self.act(torch.einsum("...nd,nde->...ne", x, self.module_weight[layer]) + self.module_bias[layer])
        return self.out(torch.einsum("...n,...nd->...d", final, x))


def soft_modularization(obs_dim: int, action_space: gym.Space, config: NetworkConfig, task_dim: int) -> ActorCritic:
    return ActorCritic(obs_dim, action_space, config, task_dim, body=SoftModularBody)
