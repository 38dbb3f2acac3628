"""All tasks of a family in one vector environment, optionally with a one-hot task id appended to the observation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from policygradex.common.errors import PolicyGradExError
from policygradex.envs.base import TaskFamily


# ----------------------------------------------------------------------------------------------- vector env
class MultiTaskVectorEnv:
    """Sub-envs for several tasks of a family, ``envs_per_task`` each, with a one-hot task id on the observations
    (``task_id=False``: none).

    Autoreset follows Gymnasium's NEXT_STEP mode: when a sub-env ends at step t, the observation returned at t is
    its final observation, and the step after is a reset step whose action is ignored. :meth:`step` reports those
    reset steps in ``reset_mask`` so that rollouts can drop them.
    """

    def __init__(self, family: TaskFamily, task_ids: Sequence[int], envs_per_task: int, seed: int,
                 task_id: bool = True) -> None:
        if envs_per_task < 1:
            raise PolicyGradExError(f"envs_per_task must be >= 1, got {envs_per_task}")
        self.family = family
        self.task_ids = np.asarray(task_ids, dtype=np.int64)
        self.env_task = np.repeat(self.task_ids, envs_per_task)  # family task index of each sub-env
        self.num_envs = len(self.env_task)
        tasks = [family.tasks[i] for i in self.env_task]
        if family.make_vector_env is not None:
            self.env = family.make_vector_env(tasks)
        else:
            self.env = gym.vector.SyncVectorEnv([t.make_env for t in tasks])
        self.single_action_space = self.env.single_action_space
        self._onehot = np.eye(family.n, dtype=np.float32)[self.env_task][:, : family.n if task_id else 0]
        self.obs_dim = int(np.prod(self.env.single_observation_space.shape)) + self._onehot.shape[1]
        self._prev_done = np.zeros(self.num_envs, dtype=bool)
        self.seed = seed
        self.infos: dict[str, Any] = {}
        """The sub-envs' infos of the last step (Gymnasium's vector layout: arrays, with ``_key`` masks)."""

    def _augment(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(obs, dtype=np.float32).reshape(self.num_envs, -1), self._onehot], axis=1)

    def reset(self) -> np.ndarray:
        obs, _ = self.env.reset(seed=self.seed)
        self.env.action_space.seed(self.seed)
        self._prev_done[:] = False
        return self._augment(obs)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Returns obs, rewards, terminated, truncated, reset_mask (True where this step only reset the sub-env)."""
        reset_mask = self._prev_done.copy()
        obs, rewards, terminated, truncated, self.infos = self.env.step(actions)
        terminated = np.asarray(terminated, dtype=bool) & ~reset_mask
        truncated = np.asarray(truncated, dtype=bool) & ~reset_mask
        self._prev_done = terminated | truncated
        rewards = np.where(reset_mask, 0.0, np.asarray(rewards, dtype=np.float64))
        return self._augment(obs), rewards, terminated, truncated, reset_mask

    def info_values(self, key: str) -> np.ndarray | None:
        """``infos[key]`` of the last step as a float array (num_envs, ...), 0 where a sub-env did not report it;
        None when no sub-env did."""
        if key not in self.infos:
            return None
        values = np.asarray(self.infos[key], dtype=np.float64)
        present = np.asarray(self.infos.get(f"_{key}", np.ones(self.num_envs, dtype=bool)), dtype=bool)
        return np.where(present.reshape(-1, *[1] * (values.ndim - 1)), values, 0.0)

    def close(self) -> None:
        self.env.close()


def family_spaces(family: TaskFamily, task_id: bool) -> tuple[int, gym.Space]:
    """(observation size as the policy sees it, with the task id if any; action space) of a family's tasks."""
    probe = MultiTaskVectorEnv(family, [0], 1, 0, task_id)
    try:
        return probe.obs_dim, probe.single_action_space
    finally:
        probe.close()
