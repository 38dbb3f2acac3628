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

    @property
    def task_id_dim(self) -> int:
        """Width of the one-hot task id at the end of each observation (0 without a task id)."""
        return int(self._onehot.shape[1])

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


class TaskBatchEnv:
    """One :class:`MultiTaskVectorEnv` per task, of which a batch is stepped at a time (meta-training with
    ``tasks_per_iteration``): :meth:`select` picks the batch, and the batch then looks like one vector env (the
    same ``step`` / ``info_values`` / ``num_envs`` / ``env_task`` interface). A task's sub-envs keep their episodes
    while it is not selected and continue them when it is again, so episodes are not cut at every change of batch.

    A task's env is made and reset, seeded by ``seed`` and the task index, the first time it is selected: memory
    and set-up grow with the tasks seen, time per step with the batch only (one ``step`` call per task in it)."""

    def __init__(self, family: TaskFamily, task_ids: Sequence[int], envs_per_task: int, seed: int,
                 task_id: bool = True) -> None:
        self.family, self.envs_per_task, self.seed, self.task_id = family, envs_per_task, seed, task_id
        self.task_ids = np.asarray(task_ids, dtype=np.int64)
        self.all_env_task = np.repeat(self.task_ids, envs_per_task)
        """The family task of every sub-env over all tasks (what an :class:`EpisodeTracker` of all of them needs)."""
        self._slot = {int(t): j for j, t in enumerate(self.task_ids)}
        self._envs: dict[int, MultiTaskVectorEnv] = {}
        self._obs: dict[int, np.ndarray] = {}
        probe = MultiTaskVectorEnv(family, self.task_ids[:1], 1, seed, task_id)
        self.single_action_space, self.obs_dim = probe.single_action_space, probe.obs_dim
        probe.close()
        self.batch = self.task_ids[:0]
        self.env_task = self.all_env_task[:0]
        self.num_envs = 0

    def select(self, batch: Sequence[int]) -> np.ndarray:
        """Make ``batch`` (family task indices) the tasks stepped next; returns their current observations."""
        self.batch = np.asarray(batch, dtype=np.int64)
        for t in map(int, self.batch):
            if t not in self._envs:
                env = MultiTaskVectorEnv(self.family, [t], self.envs_per_task, self.seed + 104_729 * self._slot[t],
                                         self.task_id)
                self._envs[t], self._obs[t] = env, env.reset()
        self.env_task = np.repeat(self.batch, self.envs_per_task)
        self.num_envs = len(self.env_task)
        return np.concatenate([self._obs[int(t)] for t in self.batch])

    @property
    def active_envs(self) -> np.ndarray:
        """Indices into ``all_env_task`` of the sub-envs of the current batch, in order."""
        slots = np.array([self._slot[int(t)] for t in self.batch], dtype=np.int64)
        return (slots[:, None] * self.envs_per_task + np.arange(self.envs_per_task)).reshape(-1)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`MultiTaskVectorEnv.step` of every task of the batch, concatenated in batch order."""
        e = self.envs_per_task
        parts = []
        for j, t in enumerate(map(int, self.batch)):
            out = self._envs[t].step(actions[j * e:(j + 1) * e])
            self._obs[t] = out[0]
            parts.append(out)
        return tuple(np.concatenate(x) for x in zip(*parts))  # type: ignore[return-value]

    def info_values(self, key: str) -> np.ndarray | None:
        """:meth:`MultiTaskVectorEnv.info_values` over the batch (0 for a task that did not report ``key``)."""
        values = [self._envs[int(t)].info_values(key) for t in self.batch]
        if all(v is None for v in values):
            return None
        shape = next(v for v in values if v is not None).shape[1:]
        return np.concatenate([v if v is not None else np.zeros((self.envs_per_task, *shape)) for v in values])

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()


def task_batch(task_ids: Sequence[int], size: int, seed: int, iteration: int) -> np.ndarray:
    """The tasks of meta-training iteration ``iteration`` when each iteration trains on ``size`` of them: every
    ceil(n / size) iterations (an epoch) run through a fresh permutation of the tasks, seeded by ``seed`` and the
    epoch, in consecutive slices of ``size`` (wrapping around at the end), so every task is trained on once or twice
    an epoch. A function of its arguments only: a resumed run draws the same batches."""
    ids = np.asarray(task_ids, dtype=np.int64)
    n = len(ids)
    if size >= n:
        return ids
    per_epoch = -(-n // size)
    epoch, chunk = divmod(iteration, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(ids)
    return perm[(chunk * size + np.arange(size)) % n]


def family_spaces(family: TaskFamily, task_id: bool) -> tuple[int, gym.Space]:
    """(observation size as the policy sees it, with the task id if any; action space) of a family's tasks."""
    probe = MultiTaskVectorEnv(family, [0], 1, 0, task_id)
    try:
        return probe.obs_dim, probe.single_action_space
    finally:
        probe.close()
