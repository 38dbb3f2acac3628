"""Generalised advantage estimation (Schulman et al. 2016) over a rollout, with truncation bootstrapped."""

from __future__ import annotations

import torch

from policygradex.rl.rollout import Rollout


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_value: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> torch.Tensor:
    """Generalised advantage estimates for (T, E) arrays.

    delta_t = r_t + gamma * V(s_{t+1}) * (1 - terminated_t) - V(s_t); the recursion
    A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1} stops at every episode end (terminated or truncated).
    With NEXT_STEP autoreset s_{t+1} after a truncation is the final observation, so truncated steps bootstrap
    from V(final obs) and terminal steps do not bootstrap at all. ``next_value`` is V of the observation after
    the last step.
    """
    num_steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    term = terminated.to(rewards.dtype)
    done = (terminated | truncated).to(rewards.dtype)
    for t in reversed(range(num_steps)):
        v_next = next_value if t == num_steps - 1 else values[t + 1]
        delta = rewards[t] + gamma * v_next * (1.0 - term[t]) - values[t]
        last = delta + gamma * gae_lambda * (1.0 - done[t]) * last
        advantages[t] = last
    return advantages


def add_advantages(rollout: Rollout, gamma: float, gae_lambda: float) -> None:
    rollout.advantages = compute_gae(
        rollout.rewards, rollout.values, rollout.next_value, rollout.terminated, rollout.truncated, gamma, gae_lambda
    )
    rollout.returns = rollout.advantages + rollout.values
