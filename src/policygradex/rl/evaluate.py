"""The return (and the family's episode metrics, such as success) a policy reaches on a family's tasks."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical

from policygradex.common.errors import PolicyGradExError
from policygradex.envs.base import TaskFamily
from policygradex.envs.vector import MultiTaskVectorEnv
from policygradex.rl.rollout import Episode, EpisodeTracker, env_action

# ----------------------------------------------------------------------------------------------- measuring a policy
MAX_EVAL_ENVS = 128
"""Sub-environments alive at once when evaluating. Beyond it the tasks are evaluated a few at a time: 50 Meta-World
episodes for each of 10 tasks were 500 MuJoCo environments, 11.5 GB in one process (two of them were killed for
memory on a 24 GB machine)."""


def policy_action(model: nn.Module, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
    """The policy's action for a batch of observations: sampled, or its mode (``deterministic``: the most likely
    discrete action, the Gaussian's mean), as Stable-Baselines3's ``predict(deterministic=True)``."""
    if not deterministic:
        return model.get_action_and_value(obs)[0]
    distribution = getattr(model, "distribution", None)
    if distribution is None:
        raise PolicyGradExError(f"{type(model).__name__} has no distribution(obs): deterministic actions need one; "
                                "sample instead (deterministic=False, --stochastic)")
    dist = distribution(obs)
    return dist.logits.argmax(-1) if isinstance(dist, Categorical) else dist.mean


@torch.no_grad()
def evaluate_episodes(family: TaskFamily, task_ids: list[int], model: nn.Module, episodes: int, seed: int,
                      task_id: bool = True, deterministic: bool = False) -> dict[int, dict[str, Any]]:
    """Per task, the means over ``episodes`` fresh episodes (one per sub-env; actions sampled from the policy, or
    its mode with ``deterministic``) of the undiscounted return (``"return"``; its population std over the
    episodes in ``"return_std"``) and of each of the family's episode metrics (e.g. ``"success"``).

    A family whose sub-envs cycle through goal variants (Meta-World: the j-th sub-env of a task starts at goal j)
    thus scores one episode per goal. When ``len(task_ids) * episodes`` exceeds :data:`MAX_EVAL_ENVS`, the tasks
    are evaluated in chunks of as many as fit (at least one), chunk c with seed ``seed + 100_003 * c``."""
    per_chunk = len(task_ids) if len(task_ids) * episodes <= MAX_EVAL_ENVS else max(1, MAX_EVAL_ENVS // episodes)
    out: dict[int, dict[str, Any]] = {}
    for c, lo in enumerate(range(0, len(task_ids), per_chunk)):
        out.update(_evaluate_chunk(family, task_ids[lo:lo + per_chunk], model, episodes, seed + 100_003 * c, task_id,
                                   deterministic))
    return out


def _evaluate_chunk(family: TaskFamily, task_ids: list[int], model: nn.Module, episodes: int, seed: int,
                    task_id: bool, deterministic: bool) -> dict[int, dict[str, Any]]:
    env = MultiTaskVectorEnv(family, task_ids, episodes, seed, task_id)
    tracker = EpisodeTracker(env.env_task, family.metrics)
    obs = env.reset()
    first: dict[int, Episode] = {}
    while len(first) < env.num_envs:
        action = policy_action(model, torch.as_tensor(obs), deterministic)
        obs, rewards, terminated, truncated, reset_mask = env.step(env_action(action, env.single_action_space))
        done = terminated | truncated
        before = len(tracker.finished)
        tracker.update(rewards, done, ~reset_mask, env)
        for j, episode in zip(np.flatnonzero(done), tracker.finished[before:]):
            first.setdefault(int(j), episode)
    env.close()
    out: dict[int, dict[str, Any]] = {}
    for t in task_ids:
        mine = [e for j, e in first.items() if env.env_task[j] == t]
        returns = [e.ret for e in mine]
        out[t] = {"return": float(np.mean(returns)), "return_std": float(np.std(returns))}
        for m in family.metrics:
            values = [e.metrics[m.name] for e in mine if m.name in e.metrics]
            if values:
                out[t][m.name] = np.mean(np.asarray(values, dtype=np.float64), axis=0).tolist()
    return out
