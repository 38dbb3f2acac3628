"""A task family: named tasks, each a zero-argument environment factory, and how a family is checked and described."""

from __future__ import annotations

import collections

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from policygradex.common.errors import PolicyGradExError


@dataclass(frozen=True)
class Task:
    """One task (objective) of a family."""

    name: str
    """Short unique name, used in groups.json and plots."""
    make_env: Callable[[], gym.Env]
    """Factory of a fresh Gymnasium env for this task (with its time limit)."""
    params: Mapping[str, float] = field(default_factory=dict)
    """The physical or reward parameters that distinguish this task, for reports."""


@dataclass(frozen=True)
class EpisodeMetric:
    """A per-episode number besides the return, accumulated from one key of the sub-envs' step infos."""

    name: str
    """How it is reported (``success``, ``vector_return``)."""
    info_key: str
    """The info key read at every valid step (``success``, ``vector_reward``)."""
    reduce: Literal["sum", "max"] = "sum"
    """Sum over the episode's steps (a vector return) or maximum (success at any step)."""
    scalar: bool = True
    """False for a vector per step (one entry per objective): reported per component, not in the training curve."""


@dataclass(frozen=True)
class TaskFamily:
    """n tasks sharing observation and action spaces."""

    name: str
    """Family name."""
    tasks: tuple[Task, ...]
    """The tasks, in a fixed order (task i is row/column i of the affinity matrix)."""
    description: str = ""
    """One line for ``policygradex families``."""
    make_vector_env: Callable[[Sequence[Task]], gym.vector.VectorEnv] | None = None
    """Optional fast path: one vector env whose sub-env j runs tasks[j] (must use NEXT_STEP autoreset).
    None: a SyncVectorEnv over the tasks' ``make_env``."""
    planted_groups: tuple[tuple[int, ...], ...] | None = None
    """The true groups when they are known by construction (the ``planted`` family): the report and ``compare``
    score the method against them. None for real families."""
    metrics: tuple[EpisodeMetric, ...] = ()
    """Per-episode numbers besides the return, read from the step infos (Meta-World's success, an MO family's
    vector return): tracked in training curves and reported by the evaluation commands."""
    headline: str = "return"
    """What a policy is scored by where one number is reported per task (``compare``): ``"return"`` or the name of
    a scalar metric (``"success"`` for Meta-World, as the paper reports)."""
    eval_episodes: int = 10
    """Episodes per task when ``compare`` scores a policy, unless told otherwise: 50 for Meta-World, one per goal
    variant as ``metaworld.evaluation`` does."""
    default_task_id: bool = False
    """Whether runs on this family use the one-hot task id unless told otherwise (``--task-id/--no-task-id``): on
    for Meta-World, whose tasks cannot be told apart from the observation."""
    default_gamma: float | None = None
    """PPO's discount for this family when the run does not choose one (``policygradex.pipeline.runner`` puts it
    in config.json in place of PPOConfig's 0.99), e.g. 0.8 for ``highway`` as highway-env's own training scripts
    use. None: PPOConfig's default."""
    sample_task: Callable[[np.random.Generator], Task] | None = None
    """Draws one task from the family's parameter range (a pole length, a gravity, a traffic density), for the
    meta-RL setting's unseen target tasks (:func:`unseen_tasks`). None: the family has no range to draw from."""

    @property
    def n(self) -> int:
        return len(self.tasks)

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]


def import_extra(module: str, needed_for: str, install: str) -> Any:
    """Import an optional extra's module, with one clear error line when it is missing: a family that needs it
    imports it only when an environment is made, so that listing the families works without it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise PolicyGradExError(f"{needed_for} needs {module}: {install}") from None


def validate_family(family: TaskFamily) -> tuple[gym.Space, gym.Space]:
    """Check names are unique and every task has the same spaces; return (observation, action) space."""
    if family.n < 2:
        raise PolicyGradExError(f"family {family.name!r} has {family.n} task(s); at least 2 are needed")
    names = family.task_names
    dupes = sorted(name for name, count in collections.Counter(names).items() if count > 1)
    if dupes:
        raise PolicyGradExError(f"family {family.name!r}: task names must be unique, repeated: {dupes}")
    spaces = []
    for task in family.tasks:
        try:
            env = task.make_env()
        except PolicyGradExError:
            raise
        except Exception as exc:
            raise PolicyGradExError(f"family {family.name!r}: make_env() of task {task.name!r} raised "
                                    f"{type(exc).__name__}: {exc}") from None
        try:
            spaces.append((env.observation_space, env.action_space))
        finally:
            env.close()
    obs0, act0 = spaces[0]
    if not isinstance(obs0, gym.spaces.Box) or len(obs0.shape) != 1:
        raise PolicyGradExError(f"family {family.name!r}: observations must be a flat Box, got {obs0}")
    if not isinstance(act0, (gym.spaces.Discrete, gym.spaces.Box)):
        raise PolicyGradExError(f"family {family.name!r}: actions must be Discrete or Box, got {act0}")
    def one_line(space: gym.Space) -> str:
        return " ".join(str(space).split())

    for task, (obs, act) in zip(family.tasks[1:], spaces[1:]):
        if obs != obs0:
            raise PolicyGradExError(
                f"family {family.name!r}: task {task.name!r} has observation space {one_line(obs)} but task "
                f"{family.tasks[0].name!r} has {one_line(obs0)}; all tasks must share observation and action spaces"
            )
        if act != act0:
            raise PolicyGradExError(
                f"family {family.name!r}: task {task.name!r} has action space {one_line(act)} but task "
                f"{family.tasks[0].name!r} has {one_line(act0)}; all tasks must share observation and action spaces"
            )
    return obs0, act0


def describe_family(family: TaskFamily) -> str:
    params = ", ".join(t.name for t in family.tasks)
    return f"{family.name}: {family.n} tasks ({params})"


def unseen_tasks(family: TaskFamily, count: int, seed: int) -> TaskFamily:
    """``count`` tasks drawn with ``seed`` from the family's parameter range (``TaskFamily.sample_task``), none
    with the parameters of a source task nor of another drawn task, as a family of their own (same spaces, vector
    env and metrics; no planted groups). Task i is named ``unseen-i:NAME``."""
    if family.sample_task is None:
        raise PolicyGradExError(f"family {family.name!r} has no parameter range to draw unseen tasks from")
    if count < 1:
        raise PolicyGradExError(f"the number of unseen tasks must be >= 1, got {count}")
    rng = np.random.default_rng(seed)
    seen = {tuple(sorted(t.params.items())) for t in family.tasks}
    tasks: list[Task] = []
    for _ in range(100 * count):
        task = family.sample_task(rng)
        key = tuple(sorted(task.params.items()))
        if key not in seen:
            seen.add(key)
            tasks.append(replace(task, name=f"unseen-{len(tasks)}:{task.name}"))
            if len(tasks) == count:
                return replace(family, name=f"{family.name}[unseen {count}, seed {seed}]", tasks=tuple(tasks),
                               planted_groups=None)
    raise PolicyGradExError(f"family {family.name!r}: could not draw {count} distinct unseen tasks")
