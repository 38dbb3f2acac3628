"""The return a policy reaches on a family's tasks."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from policygradex.envs.base import TaskFamily
from policygradex.envs.vector import MultiTaskVectorEnv
from policygradex.rl.rollout import EpisodeTracker, env_action


# ----------------------------------------------------------------------------------------------- measuring a policy
@torch.no_grad()
def evaluate_returns(family: TaskFamily, task_ids: list[int], model: nn.Module, episodes: int, seed: int,
                     task_id: bool = True) -> dict[int, float]:
    """Mean undiscounted return of ``episodes`` fresh episodes per task (actions sampled from the policy)."""
    env = MultiTaskVectorEnv(family, task_ids, episodes, seed, task_id)
    tracker = EpisodeTracker(env.env_task)
    obs = env.reset()
    first: dict[int, float] = {}
    while len(first) < env.num_envs:
        action, _, _, _ = model.get_action_and_value(torch.as_tensor(obs))
        obs, rewards, terminated, truncated, reset_mask = env.step(env_action(action, env.single_action_space))
        done = terminated | truncated
        before = len(tracker.finished)
        tracker.update(rewards, done, ~reset_mask)
        for j, (task, ret, _) in zip(np.flatnonzero(done), tracker.finished[before:]):
            first.setdefault(int(j), ret)
    env.close()
    out: dict[int, list[float]] = {t: [] for t in task_ids}
    for j, ret in first.items():
        out[int(env.env_task[j])].append(ret)
    return {t: float(np.mean(v)) for t, v in out.items()}
