"""The return (and the family's episode metrics, such as success) a policy reaches on a family's tasks."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from policygradex.envs.base import TaskFamily
from policygradex.envs.vector import MultiTaskVectorEnv
from policygradex.rl.rollout import Episode, EpisodeTracker, env_action


# ----------------------------------------------------------------------------------------------- measuring a policy
@torch.no_grad()
def evaluate_episodes(family: TaskFamily, task_ids: list[int], model: nn.Module, episodes: int, seed: int,
                      task_id: bool = True) -> dict[int, dict[str, Any]]:
    """Per task, the means over ``episodes`` fresh episodes (one per sub-env, actions sampled from the policy) of
    the undiscounted return (``"return"``) and of each of the family's episode metrics (e.g. ``"success"``).

    A family whose sub-envs cycle through goal variants (Meta-World: the j-th sub-env of a task starts at goal j)
    thus scores one episode per goal."""
    env = MultiTaskVectorEnv(family, task_ids, episodes, seed, task_id)
    tracker = EpisodeTracker(env.env_task, family.metrics)
    obs = env.reset()
    first: dict[int, Episode] = {}
    while len(first) < env.num_envs:
        action, _, _, _ = model.get_action_and_value(torch.as_tensor(obs))
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
        out[t] = {"return": float(np.mean([e.ret for e in mine]))}
        for m in family.metrics:
            values = [e.metrics[m.name] for e in mine if m.name in e.metrics]
            if values:
                out[t][m.name] = np.mean(np.asarray(values, dtype=np.float64), axis=0).tolist()
    return out
