"""Meta-World MT10 (optional extra ``[metaworld]``): the ten manipulation tasks of the paper's multitask benchmark.

- **Reward.** The V2 reward (``reward_function_version="v2"``, metaworld 3.x's default). The published MT10
  baselines, and so the paper's Table 2, match it (Meta-World+, 2025).
- **Goals.** Each task has 50 goal variants (object and target positions), drawn once by ``metaworld.MT1(name,
  seed=goal_seed)``. A sub-env cycles through them, one per episode, starting from its own offset: the j-th
  sub-env of a task starts at goal j.
  - Training with several sub-envs per task sees many goals at once.
  - An evaluation with 50 sub-envs per task plays each goal once, as ``metaworld.evaluation`` does.
- **Seeding.** Setting a goal freezes the reset positions to it. Resets are then deterministic, and the numpy
  global RNG that metaworld 3.1.1 would otherwise use for positions is never read.
- **Episodes.** An episode is truncated by the environment itself at 500 steps and bootstrapped from V like any
  truncation. The policy sees Gymnasium's usual next-step autoreset (a plain SyncVectorEnv of single-task
  environments), not Meta-World's own same-step vector env.
- **Success.** ``info["success"]`` equal to 1 at any step of the episode (the ``success`` metric, the family's
  headline for ``compare``).
- **Task id.** The family turns the one-hot task id on by default: the tasks cannot be told apart from the
  observation.

Simulation is headless; no rendering is needed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym

from policygradex.envs.base import EpisodeMetric, Task, TaskFamily, import_extra

MT10_TASKS = ("reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
              "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3")
"""The ten MT10 tasks, in metaworld's order (``metaworld.env_dict.MT10_V3``)."""

GOALS_PER_TASK = 50
"""Goal variants per task in Meta-World's benchmarks."""

INSTALL_HINT = "pip install 'policygradex[metaworld]'"


def require_metaworld() -> Any:
    return import_extra("metaworld", "the mt10 family", INSTALL_HINT)


@functools.lru_cache(maxsize=None)
def _goals(name: str, goal_seed: int) -> tuple[type, tuple[Any, ...]]:
    """(environment class, its 50 goal variants): metaworld builds them by simulating, so once per process."""
    benchmark = require_metaworld().MT1(name, seed=goal_seed)
    return benchmark.train_classes[name], tuple(benchmark.train_tasks)


class GoalCycle(gym.Wrapper):
    """Sets the next of the task's goal variants at every reset, starting from goal ``start``."""

    def __init__(self, env: gym.Env, goals: Sequence[Any], start: int) -> None:
        super().__init__(env)
        self.goals = goals
        self.next_goal = start % len(goals)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        self.env.unwrapped.set_task(self.goals[self.next_goal])
        self.next_goal = (self.next_goal + 1) % len(self.goals)
        return self.env.reset(seed=seed, options=options)


def _mt_env(name: str, goal_seed: int, start: int) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        env_cls, goals = _goals(name, goal_seed)
        env = env_cls(reward_function_version="v2")
        env.seed(goal_seed)
        return GoalCycle(env, goals, start)

    return make


def _goal_offsets(tasks: Sequence[Task]) -> list[int]:
    """For each sub-env, how many sub-envs of the same task come before it: its first goal."""
    seen: dict[str, int] = {}
    offsets = []
    for t in tasks:
        offsets.append(seen.get(t.name, 0))
        seen[t.name] = offsets[-1] + 1
    return offsets


def mt10(goal_seed: int = 0) -> TaskFamily:
    """MT10 with the goal variants of ``metaworld.MT1(name, seed=goal_seed)``."""
    goal_seed = int(goal_seed)

    def vector(tasks: Sequence[Task]) -> gym.vector.VectorEnv:
        return gym.vector.SyncVectorEnv([_mt_env(t.name, goal_seed, j) for t, j in zip(tasks, _goal_offsets(tasks))])

    tasks = tuple(Task(name, _mt_env(name, goal_seed, 0), {"goal_seed": goal_seed}) for name in MT10_TASKS)
    return TaskFamily(
        "mt10", tasks, "Meta-World MT10, V2 reward, 50 goals per task (continuous actions; the metaworld extra)",
        vector, metrics=(EpisodeMetric("success", "success", "max"),), headline="success",
        eval_episodes=GOALS_PER_TASK, default_task_id=True,
    )
