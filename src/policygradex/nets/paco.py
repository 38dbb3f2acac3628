"""PaCo (Sun, Zhang, Xu and Tomizuka, NeurIPS 2022): parameter-compositional multitask RL. K shared parameter sets
Phi = [theta_1 .. theta_K] of one network; task tau uses theta_tau = Phi w_tau, with its own compositional vector
w_tau in R^K.

Both of PaCo's stabilisers are here:
- **Loss masking:** in a minibatch, a task whose mean PPO loss exceeds ``NetworkConfig.paco_loss_threshold`` drops
  out of the loss.
- **Reset:** that task's w_tau is reset to the mean of the other tasks' vectors, and its Adam moments to zero.
  Phi, shared by all tasks, is left alone, as in the paper.

PaCo was published with SAC, whose critic loss explodes on some MT10 tasks. With PPO the loss is in the units of
the returns, so set the threshold to the scale of yours. The default only catches divergence.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn

from policygradex.nets.config import NetworkConfig
from policygradex.nets.mlp import ActorCritic, require_task_id, split_task, stacked_linear


class PaCoBody(nn.Module):
    def __init__(self, obs_dim: int, out_dim: int, task_dim: int, config: NetworkConfig, out_std: float) -> None:
        super().__init__()
        require_task_id("paco", task_dim)
        k = config.num_parameter_sets
        if k < 1:
            raise ValueError("PaCo needs num_parameter_sets >= 1")
        self.task_dim = task_dim
        self.act = {"tanh": torch.tanh, "relu": torch.relu}[config.activation]
        sizes = [obs_dim - task_dim, *config.hidden_sizes, out_dim]
        self.set_weight = nn.ParameterList()
        self.set_bias = nn.ParameterList()
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            std = out_std if i == len(sizes) - 2 else float(torch.sqrt(torch.tensor(2.0)))
            w, bias = stacked_linear(k, a, b, std)
            self.set_weight.append(w)
            self.set_bias.append(bias)
        # every task starts from the same even mixture of the K sets: one shared initial policy, as for the MLP
        self.task_weights = nn.Parameter(torch.full((task_dim, k), 1.0 / k))

    def composition(self, obs: torch.Tensor) -> torch.Tensor:
        """(..., K): w_tau of each observation's task."""
        _, task = split_task(obs, self.task_dim)
        return task @ self.task_weights

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        state, _ = split_task(obs, self.task_dim)
        c = self.composition(obs)
        x = state
        for i, (w, b) in enumerate(zip(self.set_weight, self.set_bias)):
            # x @ (sum_k c_k W_k) + sum_k c_k b_k, without building the mixed weights per transition
            x = torch.einsum("...k,...i,kio->...o", c, x, w) + c @ b
            if i < len(self.set_weight) - 1:
                x = self.act(x)
        return x


class PaCoActorCritic(ActorCritic):
    """The actor-critic with PaCo bodies. It adds the loss masking and reset hooks that PPO calls
    (``task_loss_mask``, ``reset_masked_tasks``)."""

    def __init__(self, obs_dim: int, action_space: gym.Space, config: NetworkConfig, task_dim: int) -> None:
        super().__init__(obs_dim, action_space, config, task_dim, body=PaCoBody)
        self.loss_threshold = config.paco_loss_threshold
        self.masked_tasks: list[int] = []

    def task_loss_mask(self, obs: torch.Tensor, sample_loss: torch.Tensor) -> torch.Tensor:
        """(batch,) weights of the transitions in the PPO loss: 0 for every task whose mean loss over its
        transitions in this minibatch exceeds the threshold, else 1. Remembers those tasks for the reset."""
        _, task = split_task(obs, self.task_dim)
        counts = task.sum(0)
        mean_loss = (task.T @ sample_loss) / counts.clamp_min(1.0)
        exploded = (counts > 0) & (mean_loss > self.loss_threshold)
        self.masked_tasks = exploded.nonzero().flatten().tolist()
        return 1.0 - task @ exploded.float()

    @torch.no_grad()
    def reset_masked_tasks(self, optimizer: torch.optim.Optimizer) -> None:
        """PaCo's reset of the masked tasks' w_tau: the mean of the other tasks' vectors, Adam moments zeroed."""
        if not self.masked_tasks:
            return
        masked = torch.tensor(self.masked_tasks)
        others = torch.ones(self.task_dim, dtype=torch.bool)
        others[masked] = False
        for body in (self.actor, self.critic):
            w = body.task_weights
            w[masked] = w[others].mean(0) if others.any() else torch.full_like(w[masked], 1.0 / w.shape[1])
            for moment in ("exp_avg", "exp_avg_sq"):
                if moment in optimizer.state.get(w, {}):
                    optimizer.state[w][moment][masked] = 0.0
        self.masked_tasks = []


def paco(obs_dim: int, action_space: gym.Space, config: NetworkConfig, task_dim: int) -> ActorCritic:
    return PaCoActorCritic(obs_dim, action_space, config, task_dim)
