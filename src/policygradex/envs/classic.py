"""Built-in families from Gymnasium's classic control and Box2D environments, one physical parameter varied per task."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from policygradex.envs.base import Task, TaskFamily

# ----------------------------------------------------------------------------------------------- built-ins
CARTPOLE_HALF_LENGTHS = tuple(float(x) for x in np.round(np.geomspace(0.1, 2.5, 10), 3))
"""Half pole lengths of the cartpole family: geometric from 0.1 (hard, fast dynamics) to 2.5 (slow, easy);
gymnasium's default is 0.5. Short and long poles need different gains, so transfer differs across the range."""

LUNAR_GRAVITIES = tuple(float(g) for g in np.linspace(-11.0, -2.0, 10))
"""Gravities of the lunarlander family (gymnasium requires -12 < g < 0; its default is -10)."""

PENDULUM_GRAVITIES = tuple(float(g) for g in np.linspace(2.0, 20.0, 10))
"""Gravities of the pendulum family (continuous actions; gymnasium's default is 10)."""


def set_cartpole_length(env: Any, half_length: float | np.ndarray) -> None:
    # Gymnasium stores HALF the pole length in `length` and derives `polemass_length` from it in __init__:
    # both must change together or the dynamics are inconsistent.
    env.length = half_length
    env.polemass_length = env.masspole * half_length


def _cartpole_env(half_length: float) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        env = gym.make("CartPole-v1")
        set_cartpole_length(env.unwrapped, half_length)
        return env

    return make


def _cartpole_vector(tasks: Sequence[Task]) -> gym.vector.VectorEnv:
    # Gymnasium's numpy-vectorised CartPole takes per-sub-env arrays for the pole parameters: one vector env
    # holds every task (~400k env-steps/s), with the same 500-step limit as CartPole-v1.
    from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

    env = CartPoleVectorEnv(num_envs=len(tasks), max_episode_steps=500)
    set_cartpole_length(env, np.array([t.params["half_length"] for t in tasks], dtype=np.float64))
    return env


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A draw from the log-uniform distribution on [low, high], rounded to 4 decimals (the task's parameter)."""
    return float(np.round(np.exp(rng.uniform(np.log(low), np.log(high))), 4))


def _cartpole_task(h: float) -> Task:
    return Task(f"len={2 * h:.2f}", _cartpole_env(h), {"half_length": h, "pole_length": 2 * h})


def cartpole() -> TaskFamily:
    tasks = tuple(_cartpole_task(h) for h in CARTPOLE_HALF_LENGTHS)
    return TaskFamily("cartpole", tasks, "CartPole-v1 with 10 pole lengths 0.2-5.0 m (discrete actions)",
                      _cartpole_vector,
                      sample_task=lambda rng: _cartpole_task(log_uniform(rng, CARTPOLE_HALF_LENGTHS[0],
                                                                         CARTPOLE_HALF_LENGTHS[-1])))


def _lunar_env(gravity: float, continuous: bool) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        return gym.make("LunarLander-v3", gravity=gravity, continuous=continuous)

    return make


def uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A draw from the uniform distribution on [low, high], rounded to 4 decimals (the task's parameter)."""
    return float(np.round(rng.uniform(low, high), 4))


def gravity_name(g: float) -> str:
    """``g=-10`` for the source tasks' whole gravities, ``g=-5.27`` for a drawn one."""
    return f"g={g:.0f}" if g == round(g) else f"g={g:.2f}"


def _lunar_task(g: float, continuous: bool) -> Task:
    return Task(gravity_name(g), _lunar_env(g, continuous), {"gravity": g})


def lunarlander() -> TaskFamily:
    tasks = tuple(_lunar_task(g, False) for g in LUNAR_GRAVITIES)
    return TaskFamily("lunarlander", tasks, "LunarLander-v3 with 10 gravities -11..-2 (discrete actions)",
                      sample_task=lambda rng: _lunar_task(uniform(rng, LUNAR_GRAVITIES[0], LUNAR_GRAVITIES[-1]), False))


def lunarlander_continuous() -> TaskFamily:
    tasks = tuple(_lunar_task(g, True) for g in LUNAR_GRAVITIES)
    return TaskFamily("lunarlander-continuous", tasks, "LunarLander-v3 continuous, 10 gravities -11..-2 (Gaussian)",
                      sample_task=lambda rng: _lunar_task(uniform(rng, LUNAR_GRAVITIES[0], LUNAR_GRAVITIES[-1]), True))


def _pendulum_env(g: float) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        return gym.make("Pendulum-v1", g=g)

    return make


def _pendulum_task(g: float) -> Task:
    return Task(gravity_name(g), _pendulum_env(g), {"gravity": g})


def pendulum() -> TaskFamily:
    tasks = tuple(_pendulum_task(g) for g in PENDULUM_GRAVITIES)
    return TaskFamily("pendulum", tasks, "Pendulum-v1 with 10 gravities 2..20 (continuous actions)",
                      sample_task=lambda rng: _pendulum_task(uniform(rng, PENDULUM_GRAVITIES[0], PENDULUM_GRAVITIES[-1])))
