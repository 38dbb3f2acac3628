"""Task families: n named tasks that share observation and action spaces.

A :class:`TaskFamily` is a list of :class:`Task` (a name, a Gymnasium env factory, the task's parameters). Built-in
families are registered in :data:`FAMILIES`; a user family is any ``package.module:function`` returning a
TaskFamily. :class:`MultiTaskVectorEnv` runs several tasks side by side and appends a one-hot task id (over the
whole family) to every observation, so one task-conditioned policy serves all tasks.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from .errors import PolicyGradExError


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

    @property
    def n(self) -> int:
        return len(self.tasks)

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]


# ----------------------------------------------------------------------------------------------- built-ins
CARTPOLE_HALF_LENGTHS = tuple(float(x) for x in np.round(np.geomspace(0.1, 2.5, 10), 3))
"""Half pole lengths of the cartpole family: geometric from 0.1 (hard, fast dynamics) to 2.5 (slow, easy);
gymnasium's default is 0.5. Short and long poles need different gains, so transfer differs across the range."""

LUNAR_GRAVITIES = tuple(float(g) for g in np.linspace(-11.0, -2.0, 10))
"""Gravities of the lunarlander family (gymnasium requires -12 < g < 0; its default is -10)."""

PENDULUM_GRAVITIES = tuple(float(g) for g in np.linspace(2.0, 20.0, 10))
"""Gravities of the pendulum family (continuous actions; gymnasium's default is 10)."""


def _set_cartpole_length(env: Any, half_length: float | np.ndarray) -> None:
    # Gymnasium stores HALF the pole length in `length` and derives `polemass_length` from it in __init__:
    # both must change together or the dynamics are inconsistent.
    env.length = half_length
    env.polemass_length = env.masspole * half_length


def _cartpole_env(half_length: float) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        env = gym.make("CartPole-v1")
        _set_cartpole_length(env.unwrapped, half_length)
        return env

    return make


def _cartpole_vector(tasks: Sequence[Task]) -> gym.vector.VectorEnv:
    # Gymnasium's numpy-vectorised CartPole takes per-sub-env arrays for the pole parameters: one vector env
    # holds every task (~400k env-steps/s), with the same 500-step limit as CartPole-v1.
    from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

    env = CartPoleVectorEnv(num_envs=len(tasks), max_episode_steps=500)
    _set_cartpole_length(env, np.array([t.params["half_length"] for t in tasks], dtype=np.float64))
    return env


def cartpole() -> TaskFamily:
    tasks = tuple(
        Task(f"len={2 * h:.2f}", _cartpole_env(h), {"half_length": h, "pole_length": 2 * h})
        for h in CARTPOLE_HALF_LENGTHS
    )
    return TaskFamily("cartpole", tasks, "CartPole-v1 with 10 pole lengths 0.2-5.0 m (discrete actions)", _cartpole_vector)


def _lunar_env(gravity: float, continuous: bool) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        return gym.make("LunarLander-v3", gravity=gravity, continuous=continuous)

    return make


def lunarlander() -> TaskFamily:
    tasks = tuple(Task(f"g={g:.0f}", _lunar_env(g, False), {"gravity": g}) for g in LUNAR_GRAVITIES)
    return TaskFamily("lunarlander", tasks, "LunarLander-v3 with 10 gravities -11..-2 (discrete actions)")


def lunarlander_continuous() -> TaskFamily:
    tasks = tuple(Task(f"g={g:.0f}", _lunar_env(g, True), {"gravity": g}) for g in LUNAR_GRAVITIES)
    return TaskFamily("lunarlander-continuous", tasks, "LunarLander-v3 continuous, 10 gravities -11..-2 (Gaussian)")


def _pendulum_env(g: float) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        return gym.make("Pendulum-v1", g=g)

    return make


def pendulum() -> TaskFamily:
    tasks = tuple(Task(f"g={g:.0f}", _pendulum_env(g), {"gravity": g}) for g in PENDULUM_GRAVITIES)
    return TaskFamily("pendulum", tasks, "Pendulum-v1 with 10 gravities 2..20 (continuous actions)")


def _planted(**kwargs: Any) -> TaskFamily:
    from .planted import planted

    return planted(**kwargs)


FAMILIES: dict[str, Callable[..., TaskFamily]] = {
    "cartpole": cartpole,
    "lunarlander": lunarlander,
    "lunarlander-continuous": lunarlander_continuous,
    "pendulum": pendulum,
    "planted": _planted,
}
"""Built-in families by name; a family with parameters is called as ``name(key=value,...)``, e.g.
``planted(n=12,groups=4,conflict=0.5)``. Future families (highway, metaworld-mt10) register here."""


def register_family(name: str, factory: Callable[[], TaskFamily]) -> None:
    """Add a family to the registry (e.g. from a plugin package)."""
    FAMILIES[name] = factory


# ----------------------------------------------------------------------------------------------- loading
def parse_call(spec: str) -> tuple[str, dict[str, Any]]:
    """``name(key=value,...)`` -> (name, {key: int or float}); a plain name -> (name, {})."""
    if not spec.endswith(")") or "(" not in spec:
        return spec, {}
    name, _, rest = spec[:-1].partition("(")
    kwargs: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in rest.split(","))):
        key, sep, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not sep or not key.strip() or not math.isfinite(number):
            raise PolicyGradExError(f"family {spec!r}: expected name(key=number,...), e.g. planted(n=12,groups=4)")
        kwargs[key.strip()] = int(number) if number.is_integer() and "." not in value else number
    return name.strip(), kwargs


def load_family(spec: str) -> TaskFamily:
    """A built-in family name, or ``package.module:function`` returning a TaskFamily; spaces are validated."""
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise PolicyGradExError(
                f"family {spec!r}: cannot import module {module_name!r} ({exc}); "
                "give an importable package.module:function"
            ) from None
        except Exception as exc:  # the module itself raised while it was imported
            raise PolicyGradExError(f"family {spec!r}: importing {module_name!r} raised "
                                    f"{type(exc).__name__}: {exc}") from None
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise PolicyGradExError(f"family {spec!r}: module {module_name!r} has no callable {attr!r}")
        try:
            family = factory()
        except PolicyGradExError:
            raise
        except Exception as exc:
            raise PolicyGradExError(f"family {spec!r}: {attr}() raised {type(exc).__name__}: {exc}") from None
        if not isinstance(family, TaskFamily):
            raise PolicyGradExError(f"family {spec!r}: {attr}() returned {type(family).__name__}, not a TaskFamily")
    elif (call := parse_call(spec))[0] in FAMILIES:
        name, kwargs = call
        try:
            family = FAMILIES[name](**kwargs)
        except TypeError as exc:
            raise PolicyGradExError(f"family {spec!r}: {exc}") from None
    else:
        raise PolicyGradExError(
            f"unknown family {spec!r}; built-in families: {', '.join(sorted(FAMILIES))} "
            "(or pass package.module:function returning a TaskFamily)"
        )
    validate_family(family)
    return family


def validate_family(family: TaskFamily) -> tuple[gym.Space, gym.Space]:
    """Check names are unique and every task has the same spaces; return (observation, action) space."""
    if family.n < 2:
        raise PolicyGradExError(f"family {family.name!r} has {family.n} task(s); at least 2 are needed")
    names = family.task_names
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PolicyGradExError(f"family {family.name!r}: task names must be unique, repeated: {dupes}")
    spaces = []
    for task in family.tasks:
        try:
            env = task.make_env()
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
        obs, rewards, terminated, truncated, _ = self.env.step(actions)
        terminated = np.asarray(terminated, dtype=bool) & ~reset_mask
        truncated = np.asarray(truncated, dtype=bool) & ~reset_mask
        self._prev_done = terminated | truncated
        rewards = np.where(reset_mask, 0.0, np.asarray(rewards, dtype=np.float64))
        return self._augment(obs), rewards, terminated, truncated, reset_mask

    def close(self) -> None:
        self.env.close()


def describe_family(family: TaskFamily) -> str:
    params = ", ".join(t.name for t in family.tasks)
    return f"{family.name}: {family.n} tasks ({params})"

